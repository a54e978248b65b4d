//! Whiteouts, the deletions a layer records: in tar streams as `.wh.<name>` entries (AUFS
//! style, what layer tarballs carry) and on disk, overlay-style, as 0:0 character devices and
//! the `trusted.overlay.opaque=y` xattr on a directory that hides everything below it. The
//! drivers that keep overlay-style deletions (overlay's upper dirs, vfs's staging) use these
//! so that every crate recognises the same markers.

/// The tar-name prefix of a whiteout: `.wh.<name>` deletes `<name>`.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The prefix of whiteout metadata entries (`.wh..wh.<x>`), never files of their own.
pub(crate) const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// The tar name that makes its directory opaque.
pub(crate) const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";

/// The xattr an overlay upper dir marks an opaque directory with (value `y`).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Whether a file of mode `mode` (type bits included) and device number `major:minor` is an
/// overlay whiteout: a character device 0:0.
pub fn is_overlay_whiteout(mode: u32, major: u32, minor: u32) -> bool {
    rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::CharacterDevice
        && major == 0
        && minor == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_zero_character_device_is_a_whiteout() {
        assert!(is_overlay_whiteout(0o020000, 0, 0));
        assert!(is_overlay_whiteout(0o020644, 0, 0));
        assert!(
            !is_overlay_whiteout(0o020000, 1, 3),
            "/dev/null is no whiteout"
        );
        assert!(
            !is_overlay_whiteout(0o060000, 0, 0),
            "a block device is no whiteout"
        );
        assert!(
            !is_overlay_whiteout(0o100000, 0, 0),
            "a regular file is no whiteout"
        );
    }
}
