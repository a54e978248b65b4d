#!/bin/bash
# Records what containers-storage 1.43 prints for every layer command.
B=${B:-containers-storage}  # set B=path/to/layerstore to compare
S=${S:-/tmp/study}
rm -rf $S; mkdir -p $S
G="$B -g $S/root -R $S/run -s vfs"
t(){ echo "\$ ${*#$G }" | sed "s|$G|CS|; s|$TARS|\$TARS|g"; "$@" >$S/o 2>$S/e </dev/null; rc=$?; echo "[stdout]"; cat -A $S/o | head -40; echo "[stderr]"; cat $S/e | head -20; echo "[rc=$rc]"; echo; }
ti(){ f=$1; shift; echo "\$ ${*} < $f" | sed "s|$G|CS|; s|$TARS|\$TARS|g"; "$@" >$S/o 2>$S/e <$f; rc=$?; echo "[stdout]"; cat -A $S/o | head -40; echo "[stderr]"; cat $S/e | head -20; echo "[rc=$rc]"; echo; }
# The repository's fixture tarballs; shown as $TARS in the transcript.
TARS=${TARS:-$(cd "$(dirname "$0")/../../../../tests/fixtures/go-1.43/tars" && pwd)}
t $G layers
t $G layers --json
t $G layers -t
t $G create-layer
t $G create-layer -n base -n base2
t $G create-layer --id 1111111111111111111111111111111111111111111111111111111111111111 -n child base
t $G create-layer --id 1111111111111111111111111111111111111111111111111111111111111111
t $G create-layer -n base
t $G create-layer nonexist
t $G create-layer a b
t $G create-layer -j -n jsonlayer -l label1
t $G createlayer -n alias1
t $G layers
t $G layers -t
t $G layers --json
t $G layer base
t $G layer base child --json
t $G layer nonexist
t $G layer base nonexist
t $G layer -j nonexist
t $G layer
t $G import-layer -f $TARS/basic.tar -n imported
ti $TARS/basic.tar.gz $G import-layer -n imported-gz
t $G import-layer -f /nonexistent/file
t $G import-layer -f $TARS/basic.tar -n imported
t $G importlayer -j -f $TARS/child-whiteouts.tar -n wh imported
ti /dev/null $G import-layer -n empty
t $G applydiff -f $TARS/basic.tar base
t $G applydiff base
t $G applydiff -f $TARS/basic.tar nonexist
t $G applydiff
t $G apply-diff -f /nonexistent base
t $G diffsize imported
t $G diffsize wh
t $G diffsize wh imported
t $G diffsize nonexist
t $G diff-size
t $G changes wh
t $G changes -j wh
t $G changes nonexist
t $G changes
t $G diff -f $S/d.tar imported
sha256sum $S/d.tar $TARS/basic.tar | sed "s|$S|S|; s|$TARS|\$TARS|"
t $G diff -c -f $S/d.tar.gz imported
t $G diff -u -f $S/d.tar imported
t $G diff -b imported
t $G diff -x imported
t $G diff nonexist
t $G diff
t $G exists base
t $G exists base nonexist
t $G exists -q base nonexist
t $G exists -j base
t $G exists -l base
t $G exists -i base
t $G exists -c base
t $G exists
t $G get-names base
t $G get-names -j base
t $G get-names nonexist
t $G get-names
t $G getnames child
t $G add-names -n extra base
t $G add-names -j -n extra2 base
t $G add-names -n base child
t $G get-names base
t $G get-names child
t $G add-names base
t $G add-names -n x nonexist
t $G set-names -n only base
t $G set-names -j -n only2 -n only3 only
t $G set-names base
t $G set-names -n y nonexist
t $G metadata only
t $G set-metadata -m "hello world" only2
t $G set-metadata only2
t $G set-metadata -m x nonexist
t $G set-metadata -f /nonexistent only2
t $G metadata only2
t $G metadata -q only2
t $G metadata -j only2 nonexist
t $G metadata nonexist
t $G metadata
t $G setmetadata -m "multi
line
" only2
t $G metadata only2
t $G list-layer-data only2
t $G list-layer-data -j only2
t $G set-layer-data -f $TARS/basic.tar only2 key1
t $G set-layer-data -f $TARS/basic.tar only2 Key/2
ti /etc/hostname $G set-layer-data only2 key3
t $G list-layer-data only2
t $G list-layer-data -j only2
t $G get-layer-data only2 key3
t $G get-layer-data only2 missing
t $G get-layer-data nonexist key1
t $G get-layer-data -f $S/out only2 key3
t $G get-layer-data only2
t $G set-layer-data only2
t $G set-layer-data -f /nonexistent only2 k
t $G set-layer-data only2 ""
t $G list-layer-data nonexist
t $G layer-parent-owners only2
t $G layer-parent-owners -j only2 wh
t $G layer-parent-owners nonexist
t $G layer-parent-owners
t $G mount imported
t $G mount -j imported
t $G mounted imported
t $G mounted -j imported
t $G mount nonexist
t $G mount -j nonexist
t $G mount imported-gz nonexist
t $G mount
t $G unmount imported
t $G mounted imported
t $G unmount imported
t $G umount -j imported
t $G unmount -f imported-gz
t $G unmount nonexist
t $G unmount -j nonexist
t $G unmount
t $G mounted nonexist
t $G mounted imported
t $G mounted
t $G delete-layer base
t $G delete-layer nonexist
t $G delete-layer -j nonexist
t $G delete-layer
t $G deletelayer -j child
t $G delete nonexist
t $G delete -j jsonlayer
t $G delete alias1
t $G delete
t $G exists alias1
t $G status
t $G status -j
t $G version
t $G version -j
t $G images
t $G containers
t $G create-image base
t $G mount imported
t $G shutdown
t $G shutdown -j
t $G unmount imported
t $G shutdown
t $G wipe -j
t $G layers
t $G wipe
t $G shutdown -j
t $G layers --zz
t $G layers -z
t $G bogus
t $G layers --help
t $G --storage-opt a=b layers
t $B -g $S/root2 -R $S/run2 -s nosuchdriver layers
t $B -g $S/root2 -R $S/run2 -s vfs --storage-opt a=b layers
