/* A thin shim over ISA-L's inflate (libisal, package libisal-dev): `struct inflate_state` is
 * allocated and read here, compiled against the installed header, so the Rust side never
 * depends on that struct's layout, which changes between ISA-L releases. */
#include <stdint.h>
#include <stdlib.h>
#include <isa-l/igzip_lib.h>

/* A state that parses one gzip member: header, deflate data, then CRC-32 and size checked. */
struct inflate_state *layerstore_igzip_new(void)
{
	struct inflate_state *state = malloc(sizeof *state);
	if (state != NULL) {
		isal_inflate_init(state);
		state->crc_flag = ISAL_GZIP;
	}
	return state;
}

/* Ready for the next member of a multi-member stream. */
void layerstore_igzip_reset(struct inflate_state *state)
{
	isal_inflate_reset(state);
	state->crc_flag = ISAL_GZIP;
}

void layerstore_igzip_free(struct inflate_state *state)
{
	free(state);
}

/* One call of isal_inflate over `in` into `out` (each at most 4 GiB - 1). Returns its code
 * (negative: the stream is bad); `*consumed` and `*produced` say how much of each buffer was
 * used, `*member_end` whether the member's trailer was read and checked. At a member's end
 * ISA-L gives back the input bytes it had read ahead, so `*consumed` stops at the trailer. */
int layerstore_igzip_inflate(struct inflate_state *state, const uint8_t *in, uint32_t in_len,
			     uint8_t *out, uint32_t out_len, uint32_t *consumed,
			     uint32_t *produced, int *member_end)
{
	state->next_in = (uint8_t *)in;
	state->avail_in = in_len;
	state->next_out = out;
	state->avail_out = out_len;
	int ret = isal_inflate(state);
	*consumed = in_len - state->avail_in;
	*produced = out_len - state->avail_out;
	*member_end = state->block_state == ISAL_BLOCK_FINISH;
	return ret;
}

/* A deflate stream writing one gzip member at ISA-L's level 1, with its level buffer, both
 * allocated here (the Rust side never sees `struct isal_zstream`). */
struct layerstore_igzip_deflate {
	struct isal_zstream stream;
	uint8_t level_buf[ISAL_DEF_LVL1_DEFAULT];
};

struct layerstore_igzip_deflate *layerstore_igzip_deflate_new(void)
{
	struct layerstore_igzip_deflate *d = malloc(sizeof *d);
	if (d != NULL) {
		isal_deflate_init(&d->stream);
		d->stream.level = 1;
		d->stream.level_buf = d->level_buf;
		d->stream.level_buf_size = sizeof d->level_buf;
		d->stream.gzip_flag = IGZIP_GZIP;
		d->stream.flush = NO_FLUSH;
	}
	return d;
}

void layerstore_igzip_deflate_free(struct layerstore_igzip_deflate *d)
{
	free(d);
}

/* One call of isal_deflate over `in` into `out` (each at most 4 GiB - 1); `last` says no
 * input follows. Returns its code (non-zero: failed); `*consumed` and `*produced` say how
 * much of each buffer was used, `*finished` whether the member's trailer has been written. */
int layerstore_igzip_deflate(struct layerstore_igzip_deflate *d, const uint8_t *in,
			     uint32_t in_len, int last, uint8_t *out, uint32_t out_len,
			     uint32_t *consumed, uint32_t *produced, int *finished)
{
	d->stream.next_in = (uint8_t *)in;
	d->stream.avail_in = in_len;
	d->stream.next_out = out;
	d->stream.avail_out = out_len;
	d->stream.end_of_stream = last != 0;
	int ret = isal_deflate(&d->stream);
	*consumed = in_len - d->stream.avail_in;
	*produced = out_len - d->stream.avail_out;
	*finished = d->stream.internal_state.state == ZSTATE_END;
	return ret;
}
