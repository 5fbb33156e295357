/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* HTTP/1.x request and response parsers for metadata connections.
 *
 * One copy of the logic serves both sides: imdswatch.bpf.c runs it on the
 * bytes of each segment, and the unit tests run the very same code on byte
 * strings split at every point. The parsers are byte-at-a-time state machines
 * whose state is kept per connection, so a head split across segments, a
 * keep-alive connection and pipelined requests all parse the same way. A
 * whole head at the start of a segment (nearly all of them) takes the fast
 * path first (further down): the same result, eight bytes at a time.
 *
 * What leaves the parser is only: method, path, User-Agent, which headers
 * were present, status code, lengths, timestamps and the credentials'
 * "Expiration" value. Header values other than User-Agent (the IMDSv2 token
 * among them) and body bytes are looked at and dropped here.
 *
 * The includer defines, before including this file:
 *   IMDS_LOAD(ctx, off, buf, n)   copy n payload bytes at off into buf, 0 on success
 *   imds_on_request(void *ctx, struct imds_req_parser *p, const __u8 *buf, __u32 ua_from)
 *                                 a head completed; its path and User-Agent
 *                                 are in p (buf NULL: the byte-at-a-time
 *                                 parser), or still in the fast path's buf:
 *                                 the path at 4, the User-Agent at ua_from
 *                                 (p->path_len and p->ua_len long, cut to
 *                                 IMDS_PATH_MAX and IMDS_UA_MAX)
 *   imds_on_response(void *ctx, struct imds_resp_parser *p, __u64 end_ns)
 *   imds_on_parse_error(void *ctx, __u8 reason, __u8 direction)
 * and IMDS_PARSER_INLINE (always_inline in BPF) and IMDS_PARSER_OUTLINE
 * (noinline in BPF: bulky steps off the common path keep one copy of their code).
 */
#ifndef IMDSWATCH_HTTP_PARSE_H
#define IMDSWATCH_HTTP_PARSE_H

#include "imdswatch.h"

/* Index masking the verifier can see: clang drops an "& mask" it can prove
 * redundant, and the verifier then finds the index unbounded. */
#ifdef __bpf__
#define IMDS_BOUND(x, mask)                                          \
	({                                                           \
		__u32 __v = (x);                                     \
		asm volatile("%0 &= %1" : "+r"(__v) : "i"(mask));    \
		__v;                                                 \
	})
#else
#define IMDS_BOUND(x, mask) ((x) & (mask))
#endif

/* FNV-1a (32 bit) of lower-cased header names; tests/unit/http_parse_test.cpp
 * recomputes each constant from its name. */
#define IMDS_FNV_OFFSET 0x811c9dc5u
#define IMDS_FNV_PRIME 16777619u
#define IMDS_HDR_HASH_TOKEN 0xe22c86beu          /* x-aws-ec2-metadata-token */
#define IMDS_HDR_HASH_TOKEN_TTL 0xa1f90583u      /* x-aws-ec2-metadata-token-ttl-seconds */
#define IMDS_HDR_HASH_USER_AGENT 0x24259beeu     /* user-agent */
#define IMDS_HDR_HASH_CONTENT_LENGTH 0x4df9451du /* content-length */
#define IMDS_HDR_HASH_TRANSFER_ENC 0xddb4744cu   /* transfer-encoding */

/* Last eight bytes seen, most recent lowest: a path ending in "entials/"
 * names a role when more bytes follow; a body holding "iration"" is at the
 * credentials' expiry key. */
#define IMDS_TAIL_CREDENTIALS_DIR 0x656e7469616c732full /* entials/ */
#define IMDS_TAIL_EXPIRATION_KEY 0x69726174696f6e22ull  /* iration" */
/* the same eight bytes as a little-endian load reads them (the fast path) */
#define IMDS_TAIL_EXPIRATION_KEY_BYTES __builtin_bswap64(IMDS_TAIL_EXPIRATION_KEY)

/* A body longer than this is skipped until its last IMDS_EXPIRY_SCAN bytes:
 * IMDS puts "Expiration" last, and the keys and secrets before it are never
 * scanned. */
#define IMDS_EXPIRY_SCAN 96
#define IMDS_MAX_LENGTH (1u << 24)

/* The fast path's carried values (see imds_fast_request): in the parser's
 * memory, read and written through volatile, so the verifier sees one state
 * per header line, not one per way the lines before it could end. */
struct imds_fast_scan {
	__u32 body;    /* Content-Length's value */
	__u16 pos;     /* the next line */
	__u16 ua_from; /* User-Agent's value: start and length */
	__u16 ua_len;
	__u16 head;    /* the head's length (up to IMDS_FAST_MAX itself) */
	__u16 n;       /* bytes loaded: every compare refines a register's range,
			* and one carried through the lines would split their states */
	__u16 path_end;
	__u8 seen;     /* IMDS_FAST_SEEN bits of the headers named */
	__u8 digits;   /* Content-Length had a digit */
	__u8 flags;    /* IMDS_REQ_* from the request line */
	__u8 method;   /* 'G' or 'P' */
};

#define IMDS_MEM(x) (*(volatile __typeof__(x) *)&(x))

enum imds_header_id {
	IMDS_HDR_OTHER = 0,
	IMDS_HDR_TOKEN,
	IMDS_HDR_TOKEN_TTL,
	IMDS_HDR_USER_AGENT,
	IMDS_HDR_CONTENT_LENGTH,
	IMDS_HDR_TRANSFER_ENC,
};

enum imds_phase {
	IMDS_PH_START = 0, /* request: method; response: status line */
	IMDS_PH_TARGET,    /* request only: the path */
	IMDS_PH_LINE_REST, /* rest of the first line */
	IMDS_PH_HDR_NAME,
	IMDS_PH_HDR_VALUE,
	IMDS_PH_BODY,
	IMDS_PH_ERROR, /* stream not followed any more */
};

struct imds_req_parser {
	__u64 start_ns;
	__u64 tail;
	__u32 name_hash;
	__u32 body_left;
	__u32 seq; /* requests completed so far */
	__u16 line_len;
	__u8 phase;
	__u8 header;
	__u8 method_len;
	__u8 path_len;
	__u8 ua_len;
	__u8 flags;
	char method[8];
	char path[IMDS_PATH_MAX];
	char ua[IMDS_UA_MAX];
	struct imds_fast_scan fast;
};

struct imds_resp_parser {
	__u64 first_ns;
	__u64 tail;
	__u32 name_hash;
	__u32 body_left;
	__u32 seq; /* responses completed so far */
	__u32 cred_mask; /* bit (seq % 32): that request asked for credentials */
	__u16 line_len;
	__u16 status;
	__u8 phase;
	__u8 header;
	__u8 flags;
	__u8 has_length;
	__u8 pad;
	__u8 expiry_state; /* 0 key not seen, 1 key seen, 2 in value, 3 done */
	__u8 expiry_len;
	__u8 status_digits;
	char expiry[IMDS_EXPIRY_MAX];
	struct imds_fast_scan fast;
};

static IMDS_PARSER_INLINE __u8 imds_lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static IMDS_PARSER_INLINE __u8 imds_header_id(__u32 hash)
{
	switch (hash) {
	case IMDS_HDR_HASH_TOKEN: return IMDS_HDR_TOKEN;
	case IMDS_HDR_HASH_TOKEN_TTL: return IMDS_HDR_TOKEN_TTL;
	case IMDS_HDR_HASH_USER_AGENT: return IMDS_HDR_USER_AGENT;
	case IMDS_HDR_HASH_CONTENT_LENGTH: return IMDS_HDR_CONTENT_LENGTH;
	case IMDS_HDR_HASH_TRANSFER_ENC: return IMDS_HDR_TRANSFER_ENC;
	}
	return IMDS_HDR_OTHER;
}

/* Header-name byte, shared by both directions. Returns 1 at the blank line
 * that ends the head. */
static IMDS_PARSER_INLINE int imds_header_name_byte(__u8 c, __u8 *phase, __u16 *line_len,
						    __u32 *hash, __u8 *header)
{
	if (c == '\r')
		return 0;
	if (c == '\n') {
		if (*line_len == 0)
			return 1;
		/* a name without ':' is ignored, as servers do */
		*line_len = 0;
		*hash = IMDS_FNV_OFFSET;
		return 0;
	}
	if (c == ':') {
		*header = imds_header_id(*hash);
		*phase = IMDS_PH_HDR_VALUE;
		return 0;
	}
	*hash = (*hash ^ imds_lower(c)) * IMDS_FNV_PRIME;
	*line_len += 1;
	return 0;
}

/* Content-Length digits; returns 0, or a parse error. */
static IMDS_PARSER_INLINE __u8 imds_length_byte(__u8 c, __u32 *value, __u8 *has_length)
{
	if (c == ' ' || c == '\t')
		return IMDS_PERR_NONE;
	if (c < '0' || c > '9' || *value >= IMDS_MAX_LENGTH)
		return IMDS_PERR_BAD_LENGTH;
	*value = *value * 10 + (c - '0');
	*has_length = 1;
	return IMDS_PERR_NONE;
}

static IMDS_PARSER_INLINE void imds_req_reset(struct imds_req_parser *p)
{
	p->phase = IMDS_PH_START;
	p->line_len = 0;
	p->method_len = 0;
	p->path_len = 0;
	p->ua_len = 0;
	p->flags = 0;
	p->body_left = 0;
	p->tail = 0;
}

static IMDS_PARSER_INLINE void imds_req_fail(void *ctx, struct imds_req_parser *p, __u8 reason)
{
	p->phase = IMDS_PH_ERROR;
	imds_on_parse_error(ctx, reason, 0);
}

/* Body bytes of a request are never looked at: skipped whole. */
static IMDS_PARSER_INLINE __u32 imds_req_skippable(const struct imds_req_parser *p, __u32 left)
{
	if (p->phase == IMDS_PH_ERROR)
		return left;
	if (p->phase != IMDS_PH_BODY)
		return 0;
	return left < p->body_left ? left : p->body_left;
}

static IMDS_PARSER_INLINE void imds_req_skip(struct imds_req_parser *p, __u32 n)
{
	if (p->phase != IMDS_PH_BODY)
		return;
	p->body_left -= n;
	if (p->body_left == 0)
		imds_req_reset(p);
}

/* The blank line that ends a request head was read (buf, ua_from: as
 * imds_on_request takes them). */
static IMDS_PARSER_INLINE void imds_req_head_done(void *ctx, struct imds_req_parser *p, const __u8 *buf,
						  __u32 ua_from)
{
	imds_on_request(ctx, p, buf, ua_from);
	p->seq++;
	if (p->body_left > 0)
		p->phase = IMDS_PH_BODY;
	else
		imds_req_reset(p);
}

/* Parses buf[0..len) of the client's byte stream (len <= IMDS_SCAN_WINDOW);
 * returns the bytes consumed, which stop short of len at a body. */
static IMDS_PARSER_INLINE __u32 imds_parse_request(void *ctx, struct imds_req_parser *p,
						   const __u8 *buf, __u32 len, __u64 now)
{
	__u8 has_length = 0; /* requests need no "length seen" flag */
	__u32 i;

	/* i is the loop counter itself, so the verifier sees one exact value per
	 * iteration and prunes; bodies are skipped by the caller, not here. */
	for (i = 0; i < IMDS_SCAN_WINDOW; i++) {
		if (i >= len || p->phase == IMDS_PH_BODY || p->phase == IMDS_PH_ERROR)
			return i;
		__u8 c = buf[IMDS_BOUND(i, IMDS_SCAN_WINDOW - 1)];

		switch (p->phase) {
		case IMDS_PH_START:
			if (p->method_len == 0 && (c == '\r' || c == '\n'))
				break; /* stray CRLF between requests */
			if (p->method_len == 0)
				p->start_ns = now;
			if (c == ' ') {
				p->phase = IMDS_PH_TARGET;
				break;
			}
			if (c < 'A' || c > 'Z' || p->method_len >= sizeof(p->method) - 1) {
				imds_req_fail(ctx, p, IMDS_PERR_BAD_REQUEST_LINE);
				return len;
			}
			p->method[IMDS_BOUND(p->method_len, 7)] = c;
			p->method_len++;
			break;
		case IMDS_PH_TARGET:
			if (c == '\r' || c == '\n') {
				imds_req_fail(ctx, p, IMDS_PERR_BAD_REQUEST_LINE);
				return len;
			}
			if (c == ' ') {
				p->phase = IMDS_PH_LINE_REST;
				p->line_len = 0;
				break;
			}
			if (p->tail == IMDS_TAIL_CREDENTIALS_DIR)
				p->flags |= IMDS_REQ_CREDENTIALS;
			p->tail = (p->tail << 8) | c;
			if (p->path_len < IMDS_PATH_MAX)
				p->path[IMDS_BOUND(p->path_len, IMDS_PATH_MAX - 1)] = c;
			else
				p->flags |= IMDS_REQ_PATH_CUT;
			if (p->path_len < 255)
				p->path_len++;
			break;
		case IMDS_PH_LINE_REST:
			if (c == '\n') {
				p->phase = IMDS_PH_HDR_NAME;
				p->line_len = 0;
				p->name_hash = IMDS_FNV_OFFSET;
				break;
			}
			/* "HTTP/" must open the version */
			if (p->line_len < 5 && c != (__u8)"HTTP/"[IMDS_BOUND(p->line_len, 7)]) {
				imds_req_fail(ctx, p, IMDS_PERR_BAD_REQUEST_LINE);
				return len;
			}
			p->line_len++;
			break;
		case IMDS_PH_HDR_NAME:
			if (imds_header_name_byte(c, &p->phase, &p->line_len, &p->name_hash,
						  &p->header)) {
				imds_req_head_done(ctx, p, NULL, 0);
				break;
			}
			if (p->phase == IMDS_PH_HDR_VALUE) {
				if (p->header == IMDS_HDR_TOKEN)
					p->flags |= IMDS_REQ_HAS_TOKEN;
				else if (p->header == IMDS_HDR_TOKEN_TTL)
					p->flags |= IMDS_REQ_HAS_TOKEN_TTL;
				else if (p->header == IMDS_HDR_USER_AGENT)
					p->flags |= IMDS_REQ_HAS_UA;
			}
			break;
		case IMDS_PH_HDR_VALUE:
			if (c == '\n') {
				p->phase = IMDS_PH_HDR_NAME;
				p->line_len = 0;
				p->name_hash = IMDS_FNV_OFFSET;
				break;
			}
			if (c == '\r')
				break;
			if (p->header == IMDS_HDR_USER_AGENT) {
				if (p->ua_len == 0 && (c == ' ' || c == '\t'))
					break;
				if (p->ua_len < IMDS_UA_MAX)
					p->ua[IMDS_BOUND(p->ua_len, IMDS_UA_MAX - 1)] = c;
				if (p->ua_len < 255)
					p->ua_len++;
			} else if (p->header == IMDS_HDR_CONTENT_LENGTH) {
				__u8 err = imds_length_byte(c, &p->body_left, &has_length);

				if (err) {
					imds_req_fail(ctx, p, err);
					return len;
				}
			} else if (p->header == IMDS_HDR_TRANSFER_ENC) {
				imds_req_fail(ctx, p, IMDS_PERR_CHUNKED);
				return len;
			}
			break;
		default: /* IMDS_PH_ERROR */
			return len;
		}
	}
	return i;
}

/* After a request head: tell the response side whether its answer will
 * carry a credentials expiry worth scanning for. */
static IMDS_PARSER_INLINE void imds_note_request(struct imds_resp_parser *resp, const struct imds_req_parser *req)
{
	__u32 bit = 1u << (req->seq & 31);

	if (req->flags & IMDS_REQ_CREDENTIALS)
		resp->cred_mask |= bit;
	else
		resp->cred_mask &= ~bit;
}

static IMDS_PARSER_INLINE void imds_resp_reset(struct imds_resp_parser *p)
{
	p->phase = IMDS_PH_START;
	p->line_len = 0;
	p->status = 0;
	p->status_digits = 0;
	p->flags = 0;
	p->has_length = 0;
	p->body_left = 0;
	p->tail = 0;
	p->expiry_state = 0;
	p->expiry_len = 0;
}

static IMDS_PARSER_INLINE void imds_resp_fail(void *ctx, struct imds_resp_parser *p, __u8 reason)
{
	p->phase = IMDS_PH_ERROR;
	imds_on_parse_error(ctx, reason, 1);
}

static IMDS_PARSER_INLINE void imds_resp_complete(void *ctx, struct imds_resp_parser *p, __u64 now)
{
	imds_on_response(ctx, p, now);
	p->seq++;
	imds_resp_reset(p);
}

/* The blank line that ends a final (not 1xx) response head was read. */
static IMDS_PARSER_INLINE void imds_resp_head_done(void *ctx, struct imds_resp_parser *p, __u64 now)
{
	if (!p->has_length) {
		p->flags |= IMDS_RESP_NO_LENGTH;
		imds_resp_complete(ctx, p, now);
	} else if (p->body_left == 0) {
		imds_resp_complete(ctx, p, now);
	} else {
		p->phase = IMDS_PH_BODY;
		p->tail = 0;
	}
}

/* One body byte of a credentials response: find "Expiration" and keep its
 * value, nothing else. */
static IMDS_PARSER_INLINE void imds_expiry_byte(struct imds_resp_parser *p, __u8 c)
{
	if (p->expiry_state == 0) {
		p->tail = (p->tail << 8) | c;
		if (p->tail == IMDS_TAIL_EXPIRATION_KEY)
			p->expiry_state = 1;
	} else if (p->expiry_state == 1) {
		if (c == '"')
			p->expiry_state = 2;
	} else if (p->expiry_state == 2) {
		if (c == '"') {
			p->expiry_state = 3;
			p->flags |= IMDS_RESP_HAS_EXPIRY;
		} else if (p->expiry_len < IMDS_EXPIRY_MAX) {
			p->expiry[IMDS_BOUND(p->expiry_len, IMDS_EXPIRY_MAX - 1)] = c;
			p->expiry_len++;
		} else {
			p->expiry_state = 3; /* too long to be a timestamp: drop it */
			p->expiry_len = 0;
		}
	}
}

/* The answer being parsed is to a request that named a role. */
static IMDS_PARSER_INLINE bool imds_resp_is_credentials(const struct imds_resp_parser *p)
{
	return (p->cred_mask >> (p->seq & 31)) & 1;
}

/* Response body bytes that need no look: all of them, except the last
 * IMDS_EXPIRY_SCAN of a credentials body whose expiry is still unseen. */
static IMDS_PARSER_INLINE __u32 imds_resp_skippable(const struct imds_resp_parser *p, __u32 left)
{
	__u32 keep = 0;

	if (p->phase == IMDS_PH_ERROR)
		return left;
	if (p->phase != IMDS_PH_BODY)
		return 0;
	if (imds_resp_is_credentials(p) && p->expiry_state < 3)
		keep = IMDS_EXPIRY_SCAN;
	if (p->body_left <= keep)
		return 0;
	return left < p->body_left - keep ? left : p->body_left - keep;
}

static IMDS_PARSER_INLINE void imds_resp_skip(void *ctx, struct imds_resp_parser *p, __u32 n, __u64 now)
{
	if (p->phase != IMDS_PH_BODY)
		return;
	p->body_left -= n;
	if (p->body_left == 0)
		imds_resp_complete(ctx, p, now);
}

/* Parses buf[0..len) of the server's byte stream (len <= IMDS_SCAN_WINDOW);
 * returns the bytes consumed, which stop short of len at a skippable body. */
static IMDS_PARSER_INLINE __u32 imds_parse_response(void *ctx, struct imds_resp_parser *p,
						    const __u8 *buf, __u32 len, __u64 now)
{
	__u32 i;

	for (i = 0; i < IMDS_SCAN_WINDOW; i++) {
		if (i >= len || p->phase == IMDS_PH_ERROR || imds_resp_skippable(p, 1))
			return i;
		__u8 c = buf[IMDS_BOUND(i, IMDS_SCAN_WINDOW - 1)];

		if (p->phase == IMDS_PH_BODY) {
			/* the last bytes of a credentials body: the expiry */
			imds_expiry_byte(p, c);
			p->body_left--;
			if (p->body_left == 0)
				imds_resp_complete(ctx, p, now);
			continue;
		}
		switch (p->phase) {
		case IMDS_PH_START:
			if (p->line_len == 0) {
				if (c == '\r' || c == '\n')
					break;
				p->first_ns = now;
			}
			if (c == '\n') {
				if (p->status_digits != 3) {
					imds_resp_fail(ctx, p, IMDS_PERR_BAD_STATUS_LINE);
					return len;
				}
				p->phase = IMDS_PH_HDR_NAME;
				p->line_len = 0;
				p->name_hash = IMDS_FNV_OFFSET;
				break;
			}
			/* "HTTP/1.1 200 OK": "HTTP/" then a version, a space, three digits */
			if (p->line_len < 5) {
				if (c != (__u8)"HTTP/"[IMDS_BOUND(p->line_len, 7)]) {
					imds_resp_fail(ctx, p, IMDS_PERR_BAD_STATUS_LINE);
					return len;
				}
			} else if (p->status_digits == 0 && p->status == 0 && c == ' ') {
				p->status = 1; /* marks "space seen": digits follow */
			} else if (p->status != 0 && p->status_digits < 3) {
				if (c < '0' || c > '9') {
					imds_resp_fail(ctx, p, IMDS_PERR_BAD_STATUS_LINE);
					return len;
				}
				if (p->status_digits == 0)
					p->status = 0;
				p->status = p->status * 10 + (c - '0');
				p->status_digits++;
			}
			if (p->line_len < 0xffff)
				p->line_len++;
			break;
		case IMDS_PH_HDR_NAME:
			if (imds_header_name_byte(c, &p->phase, &p->line_len, &p->name_hash,
						  &p->header)) {
				if (p->status >= 100 && p->status < 200) {
					/* interim (100 Continue): the real answer follows */
					__u64 first = p->first_ns;

					imds_resp_reset(p);
					p->first_ns = first;
					break;
				}
				imds_resp_head_done(ctx, p, now);
			}
			break;
		case IMDS_PH_HDR_VALUE:
			if (c == '\n') {
				p->phase = IMDS_PH_HDR_NAME;
				p->line_len = 0;
				p->name_hash = IMDS_FNV_OFFSET;
				break;
			}
			if (c == '\r')
				break;
			if (p->header == IMDS_HDR_CONTENT_LENGTH) {
				__u8 err = imds_length_byte(c, &p->body_left, &p->has_length);

				if (err) {
					imds_resp_fail(ctx, p, err);
					return len;
				}
			} else if (p->header == IMDS_HDR_TRANSFER_ENC) {
				p->has_length = 0; /* chunked: the end is the connection's end */
				p->header = IMDS_HDR_OTHER;
			}
			break;
		default: /* IMDS_PH_ERROR */
			return len;
		}
	}
	return i;
}

/* ---- The fast path: a whole head in one look, eight bytes at a time ----
 *
 * Nearly every metadata head arrives whole in one segment, starting at a
 * message boundary. Those are parsed here from one load of up to
 * IMDS_FAST_MAX bytes: line ends are found eight bytes at a time, and only
 * the lines that matter (and the path, User-Agent and Content-Length) are
 * looked at closer. The result is exactly what the byte-at-a-time parser
 * gives (the unit tests and fuzzers compare the two on every split): a head
 * it is not sure of (split, too long, a stray CR or bare LF, a repeated or
 * chunked header, a path over IMDS_PATH_MAX, HEAD/POST, 1xx) is declined
 * before anything is written, and the byte-at-a-time parser takes it from
 * the same boundary. Little-endian only (every target BPF runs on here);
 * elsewhere every head is declined. */
#ifndef IMDS_FAST_TAKEN /* the includer may count heads taken fast (the unit tests do) */
#define IMDS_FAST_TAKEN(ctx, dir) \
	do {                         \
	} while (0)
#endif
#ifndef IMDS_FAST_TAIL_TAKEN /* and credentials tails taken fast */
#define IMDS_FAST_TAIL_TAKEN(ctx) \
	do {                         \
	} while (0)
#endif
#define IMDS_FAST_MAX 512   /* bytes one look takes; a head must end within them */
#define IMDS_FAST_LINES 24  /* header lines of a head */
#define IMDS_FAST_BUF (IMDS_FAST_MAX + 8) /* a word read at the last byte stays inside */
#define IMDS_PATH_WORDS ((IMDS_PATH_MAX + 8) / 8) /* words holding a path and its space */

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define IMDS_FAST_PATH 1
#else
#define IMDS_FAST_PATH 0
#endif

#define IMDS_ONES 0x0101010101010101ull
#define IMDS_SEVENS 0x7f7f7f7f7f7f7f7full
#define IMDS_W8(a, b, c, d, e, f, g, h)                                                        \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)
/* case folding of the letters only: OR 0x20 where the pattern has a letter */
#define IMDS_FOLD(a) ((__u64)(((a) >= 'a' && (a) <= 'z') ? 0x20 : 0))
#define IMDS_FOLD8(a, b, c, d, e, f, g, h) \
	IMDS_W8(IMDS_FOLD(a), IMDS_FOLD(b), IMDS_FOLD(c), IMDS_FOLD(d), IMDS_FOLD(e), IMDS_FOLD(f), IMDS_FOLD(g), IMDS_FOLD(h))
/* an eight-byte (lower-case) pattern, with its folding mask */
#define IMDS_PAT8(a, b, c, d, e, f, g, h) IMDS_W8(a, b, c, d, e, f, g, h), IMDS_FOLD8(a, b, c, d, e, f, g, h)

static IMDS_PARSER_INLINE __u64 imds_word(const __u8 *buf, __u32 i)
{
#ifdef __bpf__
	return *(const __u64 *)(buf + IMDS_BOUND(i, IMDS_FAST_MAX - 1));
#else
	__u64 w;

	__builtin_memcpy(&w, buf + (i & (IMDS_FAST_MAX - 1)), sizeof(w));
	return w;
#endif
}

static IMDS_PARSER_INLINE __u8 imds_byte(const __u8 *buf, __u32 i)
{
	return buf[IMDS_BOUND(i, IMDS_FAST_MAX - 1)];
}

/* 0x80 in each byte of w that equals c, nothing elsewhere (exact: the
 * carries of the usual "has zero byte" trick cannot cross bytes here). */
static IMDS_PARSER_INLINE __u64 imds_bytes_eq(__u64 w, __u8 c)
{
	__u64 x = w ^ (IMDS_ONES * c);

	return ~(((x & IMDS_SEVENS) + IMDS_SEVENS) | x | IMDS_SEVENS);
}

/* All bits of the bytes before byte k of a word (k <= 8). */
static IMDS_PARSER_INLINE __u64 imds_below(__u32 k)
{
	return k >= 8 ? ~0ull : (1ull << (8 * k)) - 1;
}

/* Index of the lowest flagged byte of m (m != 0): no count-zeros insn in BPF. */
static IMDS_PARSER_INLINE __u32 imds_first_byte(__u64 m)
{
	m &= -m;
	return ((m >> 7) * 0x0001020304050607ull) >> 56;
}

static IMDS_PARSER_INLINE bool imds_word_is(__u64 w, __u64 pattern, __u64 fold)
{
	return (w | fold) == pattern;
}

/* The bytes loaded, read afresh from memory at each use. */
static IMDS_PARSER_INLINE __u32 imds_fast_n(struct imds_fast_scan *f)
{
	return IMDS_BOUND(IMDS_MEM(f->n), 2 * IMDS_FAST_MAX - 1);
}

/* The line end at pos: its first CR or LF, 0 if none starts before n (one
 * found past n, in what buf held before, means none within n: the caller
 * checks; no mask here, whose branch would double the verifier's states at
 * every word of every line). */
static IMDS_PARSER_INLINE __u32 imds_fast_line_end(struct imds_fast_scan *f, const __u8 *buf, __u32 pos)
{
	for (__u32 k = 0; k < IMDS_FAST_MAX / 8; k++) {
		__u32 i = pos + k * 8;
		__u64 w, m;

		if (i >= imds_fast_n(f))
			break;
		w = imds_word(buf, i);
		m = imds_bytes_eq(w, '\r') | imds_bytes_eq(w, '\n');
		if (m)
			return i + imds_first_byte(m);
	}
	return 0;
}

/* The LF of the CRLF that ends the line at pos, within buf[0..n); 0 when the
 * line's first CR or LF is not such a pair (a stray CR, which the
 * byte-at-a-time parser skips and which would change a name, or a bare LF),
 * or no line end comes before n. Lines checked this way one after another
 * check the whole head. */
static IMDS_PARSER_INLINE __u32 imds_fast_crlf(struct imds_fast_scan *f, const __u8 *buf, __u32 pos)
{
	__u32 c = imds_fast_line_end(f, buf, pos);

	if (!c || c + 1 >= imds_fast_n(f) || imds_byte(buf, c) != '\r' || imds_byte(buf, c + 1) != '\n')
		return 0;
	return c + 1;
}

/* Which header a line names, from its first bytes: the names the parsers
 * act on, in any case, with the colon. */
static IMDS_PARSER_INLINE __u8 imds_fast_header(const __u8 *buf, __u32 pos, __u32 *value)
{
	__u64 w0 = imds_word(buf, pos), w1 = imds_word(buf, pos + 8);

	if (imds_word_is(w0, IMDS_PAT8('u', 's', 'e', 'r', '-', 'a', 'g', 'e')) &&
	    imds_word_is(w1 & 0xffffff, IMDS_W8('n', 't', ':', 0, 0, 0, 0, 0), IMDS_FOLD8('n', 't', 0, 0, 0, 0, 0, 0))) {
		*value = pos + 11;
		return IMDS_HDR_USER_AGENT;
	}
	if (imds_word_is(w0, IMDS_PAT8('c', 'o', 'n', 't', 'e', 'n', 't', '-')) &&
	    imds_word_is(w1 & 0xffffffffffffffull, IMDS_W8('l', 'e', 'n', 'g', 't', 'h', ':', 0),
			 IMDS_FOLD8('l', 'e', 'n', 'g', 't', 'h', 0, 0))) {
		*value = pos + 15;
		return IMDS_HDR_CONTENT_LENGTH;
	}
	if (imds_word_is(w0, IMDS_PAT8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r')) &&
	    imds_word_is(w1, IMDS_PAT8('-', 'e', 'n', 'c', 'o', 'd', 'i', 'n')))
		return IMDS_HDR_TRANSFER_ENC; /* never taken fast */
	if (imds_word_is(w0, IMDS_PAT8('x', '-', 'a', 'w', 's', '-', 'e', 'c')) &&
	    imds_word_is(w1, IMDS_PAT8('2', '-', 'm', 'e', 't', 'a', 'd', 'a')) &&
	    imds_word_is(imds_word(buf, pos + 16), IMDS_PAT8('t', 'a', '-', 't', 'o', 'k', 'e', 'n'))) {
		__u64 w3 = imds_word(buf, pos + 24);

		if ((w3 & 0xff) == ':')
			return IMDS_HDR_TOKEN;
		if (imds_word_is(w3, IMDS_PAT8('-', 't', 't', 'l', '-', 's', 'e', 'c')) &&
		    imds_word_is(imds_word(buf, pos + 32) & 0xffffffffffull, IMDS_W8('o', 'n', 'd', 's', ':', 0, 0, 0),
				 IMDS_FOLD8('o', 'n', 'd', 's', 0, 0, 0, 0)))
			return IMDS_HDR_TOKEN_TTL;
	}
	return IMDS_HDR_OTHER;
}

/* Content-Length's value in [v, cr): digits, blanks anywhere (as the
 * byte-at-a-time parser reads it). 0 on success; -1 for anything it would
 * call an error, which it is left to report. */
static IMDS_PARSER_INLINE int imds_fast_length(const __u8 *buf, __u32 v, __u32 cr, __u32 *value, __u8 *digits)
{
	__u32 x = 0;

	*digits = 0;
	for (__u32 k = 0; k < 24; k++) {
		__u8 c;

		if (v + k >= cr) {
			*value = x;
			return 0;
		}
		c = imds_byte(buf, v + k);
		if (c == ' ' || c == '\t')
			continue;
		if (c < '0' || c > '9' || x >= IMDS_MAX_LENGTH)
			return -1;
		x = x * 10 + (c - '0');
		*digits = 1;
	}
	return -1;
}

/* Copies buf[from, from + len) to dst (cap bytes, a multiple of 8), zeroing
 * the rest of dst: the bytes that follow in buf are other headers' values. */
static IMDS_PARSER_OUTLINE void imds_fast_copy(char *dst, __u32 cap, const __u8 *buf, __u32 from, __u32 len)
{
	for (__u32 k = 0; k < IMDS_PATH_MAX / 8; k++) {
		__u64 w;

		if (k * 8 >= cap)
			break;
		w = k * 8 < len ? imds_word(buf, from + k * 8) & imds_below(len - k * 8) : 0;
		__builtin_memcpy(dst + k * 8, &w, sizeof(w));
	}
}

/* What a request's record holds of its path and User-Agent (IMDS_PATH_MAX
 * and IMDS_UA_MAX bytes), from where imds_on_request says they are: the
 * fast path's buf, zeros after them (the bytes that follow there are other
 * headers' values), or the parser's own buffers. */
static IMDS_PARSER_INLINE void imds_request_text(char *path, char *ua, const struct imds_req_parser *p,
						 const __u8 *buf, __u32 ua_from)
{
	if (buf) {
		imds_fast_copy(path, IMDS_PATH_MAX, buf, 4, p->path_len);
		imds_fast_copy(ua, IMDS_UA_MAX, buf, ua_from, p->ua_len);
	} else {
		__builtin_memcpy(path, p->path, IMDS_PATH_MAX);
		__builtin_memcpy(ua, p->ua, IMDS_UA_MAX);
	}
}

/* Headers a head named, as bits. */
#define IMDS_FAST_SEEN(h) (1u << (h))

/* The header lines of a head from f->pos, up to its blank line within
 * buf[0..n), whose end goes to f->head: what the parsers act on goes to *f.
 * Returns 0, or -1 to decline (no blank line within n, a line end that is
 * not CRLF, a repeated or chunked header, a value the other parser would
 * call an error, too many lines). */
static IMDS_PARSER_INLINE int imds_fast_headers(struct imds_fast_scan *f, const __u8 *buf)
{
	for (__u32 l = 0; l <= IMDS_FAST_LINES; l++) {
		__u32 pos = IMDS_BOUND(IMDS_MEM(f->pos), IMDS_FAST_MAX - 1), eol, value, body;
		__u8 h, seen, digits;

		eol = imds_fast_crlf(f, buf, pos);
		if (!eol)
			return -1;
		if (eol == pos + 1) { /* the blank line */
			IMDS_MEM(f->head) = eol + 1;
			return 0;
		}
		h = imds_fast_header(buf, pos, &value);
		if (h == IMDS_HDR_TRANSFER_ENC)
			return -1;
		if (h != IMDS_HDR_OTHER) {
			seen = IMDS_MEM(f->seen);
			if (seen & IMDS_FAST_SEEN(h))
				return -1; /* repeated: the other parser joins their values */
			IMDS_MEM(f->seen) = seen | IMDS_FAST_SEEN(h);
		}
		if (h == IMDS_HDR_USER_AGENT) {
			__u32 k;

			/* leading blanks are not kept */
			for (k = 0; k < 8 && value < eol - 1; k++) {
				__u8 c = imds_byte(buf, value);

				if (c != ' ' && c != '\t')
					break;
				value++;
			}
			if (k == 8)
				return -1;
			IMDS_MEM(f->ua_from) = value;
			IMDS_MEM(f->ua_len) = eol - 1 - value;
		} else if (h == IMDS_HDR_CONTENT_LENGTH) {
			if (imds_fast_length(buf, value, eol - 1, &body, &digits))
				return -1;
			IMDS_MEM(f->body) = body;
			IMDS_MEM(f->digits) = digits;
		}
		IMDS_MEM(f->pos) = eol + 1;
	}
	return -1;
}

/* "HTTP/1.0" or "HTTP/1.1" at buf[i]. */
static IMDS_PARSER_INLINE bool imds_fast_version(const __u8 *buf, __u32 i)
{
	__u64 w = imds_word(buf, i);

	return (w & 0xffffffffffffffull) == IMDS_W8('H', 'T', 'T', 'P', '/', '1', '.', 0) &&
	       ((w >> 56) == '0' || (w >> 56) == '1');
}

/* ---- requests ---- */

static IMDS_PARSER_INLINE __u32 imds_fast_request(void *ctx, struct imds_req_parser *p, const __u8 *buf, __u32 n,
						   __u64 now)
{
	struct imds_fast_scan *f = &p->fast;
	__u32 head, k, path_end = 0, ua_from, ua_len;
	__u64 w;
	__u8 flags, method, seen;

	if (!IMDS_FAST_PATH || p->phase != IMDS_PH_START || p->method_len != 0)
		return 0;
	/* what decides the steps below goes through memory (imds_fast_scan) */
	if (n < 16)
		return 0;
	IMDS_MEM(f->n) = n;
	w = imds_word(buf, 0) & 0xffffffff;
	if (w == IMDS_W8('G', 'E', 'T', ' ', 0, 0, 0, 0))
		IMDS_MEM(f->method) = 'G';
	else if (w == IMDS_W8('P', 'U', 'T', ' ', 0, 0, 0, 0))
		IMDS_MEM(f->method) = 'P';
	else
		return 0;
	/* the path: to the line's first space (a CR or LF first: declined) */
	for (k = 0; k < IMDS_PATH_WORDS; k++) {
		__u32 i = 4 + k * 8;
		__u64 stop;

		if (i >= n)
			return 0;
		w = imds_word(buf, i);
		stop = imds_bytes_eq(w, ' ') | imds_bytes_eq(w, '\r') | imds_bytes_eq(w, '\n');
		if (stop) {
			path_end = i + imds_first_byte(stop);
			break;
		}
	}
	if (k == IMDS_PATH_WORDS || imds_byte(buf, path_end) != ' ' || path_end > 4 + IMDS_PATH_MAX)
		return 0;
	IMDS_MEM(f->path_end) = path_end;
	/* "credentials": as the other parser's last eight path bytes being
	 * "entials/" with more to come, i.e. a slash ending "entials/" that is
	 * not the path's last byte */
	IMDS_MEM(f->flags) = 0;
	for (k = 0; k < IMDS_PATH_WORDS; k++) {
		__u32 i = 4 + k * 8, end = IMDS_BOUND(IMDS_MEM(f->path_end), IMDS_FAST_MAX - 1);
		__u64 slashes;

		if (i >= end)
			break;
		slashes = imds_bytes_eq(imds_word(buf, i), '/') & imds_below(end - i);
		for (__u32 b = 0; b < 8 && slashes; b++) {
			__u32 u = i + imds_first_byte(slashes);

			slashes &= slashes - 1;
			if (u >= 11 && u + 2 <= end && imds_word(buf, u - 7) == IMDS_W8('e', 'n', 't', 'i', 'a', 'l', 's', '/'))
				IMDS_MEM(f->flags) = IMDS_REQ_CREDENTIALS;
		}
	}
	path_end = IMDS_BOUND(IMDS_MEM(f->path_end), IMDS_FAST_MAX - 1);
	/* " HTTP/1.0" or " HTTP/1.1", then the line's CRLF */
	if (path_end + 11 > n || !imds_fast_version(buf, path_end + 1) || imds_byte(buf, path_end + 9) != '\r' ||
	    imds_byte(buf, path_end + 10) != '\n')
		return 0;
	f->pos = path_end + 11;
	f->seen = 0;
	f->body = 0;
	f->ua_from = 0;
	f->ua_len = 0;
	if (imds_fast_headers(f, buf))
		return 0;
	flags = IMDS_MEM(f->flags);
	method = IMDS_MEM(f->method);
	path_end = IMDS_BOUND(IMDS_MEM(f->path_end), IMDS_FAST_MAX - 1);
	head = IMDS_BOUND(IMDS_MEM(f->head), 2 * IMDS_FAST_MAX - 1);
	seen = IMDS_MEM(f->seen);
	if (seen & IMDS_FAST_SEEN(IMDS_HDR_TOKEN))
		flags |= IMDS_REQ_HAS_TOKEN;
	if (seen & IMDS_FAST_SEEN(IMDS_HDR_TOKEN_TTL))
		flags |= IMDS_REQ_HAS_TOKEN_TTL;
	if (seen & IMDS_FAST_SEEN(IMDS_HDR_USER_AGENT))
		flags |= IMDS_REQ_HAS_UA;
	ua_from = IMDS_BOUND(IMDS_MEM(f->ua_from), IMDS_FAST_MAX - 1);
	ua_len = IMDS_BOUND(IMDS_MEM(f->ua_len), IMDS_FAST_MAX - 1);
	if (path_end < 4 || path_end > 4 + IMDS_PATH_MAX)
		return 0;
	/* what the other parser would hold at the blank line, but for the path
	 * and User-Agent: the request's record takes them from buf, and the
	 * connection's state is not written with them (in the kernel, three
	 * lines of a slot last touched one request ago) */
	p->start_ns = now;
	p->method[0] = method;
	p->method[1] = method == 'G' ? 'E' : 'U';
	p->method[2] = 'T';
	p->method_len = 3;
	p->path_len = path_end - 4;
	p->ua_len = ua_len < 255 ? ua_len : 255;
	p->flags = flags;
	p->body_left = IMDS_MEM(f->body);
	imds_req_head_done(ctx, p, buf, ua_from);
	return head;
}

/* ---- responses ---- */

static IMDS_PARSER_INLINE __u32 imds_fast_response(void *ctx, struct imds_resp_parser *p, const __u8 *buf, __u32 n,
						    __u64 now)
{
	struct imds_fast_scan *f = &p->fast;
	__u32 eol, head;
	__u16 status;

	if (!IMDS_FAST_PATH || p->phase != IMDS_PH_START || p->line_len != 0 || n < 16)
		return 0;
	/* "HTTP/1.x NNN" and anything to the line's end */
	if (!imds_fast_version(buf, 0) || imds_byte(buf, 8) != ' ')
		return 0;
	status = 0;
	for (__u32 k = 9; k < 12; k++) {
		__u8 c = imds_byte(buf, k);

		if (c < '0' || c > '9')
			return 0;
		status = status * 10 + (c - '0');
	}
	if (status < 200)
		return 0; /* 1xx: an interim answer, left to the other parser */
	IMDS_MEM(f->n) = n;
	eol = imds_fast_crlf(f, buf, 12);
	if (!eol)
		return 0;
	f->pos = eol + 1;
	f->seen = 0;
	f->body = 0;
	f->digits = 0;
	if (imds_fast_headers(f, buf))
		return 0;
	head = IMDS_BOUND(IMDS_MEM(f->head), 2 * IMDS_FAST_MAX - 1);
	p->first_ns = now;
	p->status = status;
	p->status_digits = 3;
	p->has_length = IMDS_MEM(f->digits);
	p->body_left = IMDS_MEM(f->body);
	imds_resp_head_done(ctx, p, now);
	return head;
}

/* ---- a credentials body's tail ---- */

/* The rest of a credentials body is in [0, left) and its expiry not looked
 * for yet (the byte-at-a-time parser would start from a clean state): */
static IMDS_PARSER_INLINE bool imds_fast_tail(const struct imds_resp_parser *p, __u32 left)
{
	return p->phase == IMDS_PH_BODY && imds_resp_is_credentials(p) && p->expiry_state == 0 &&
	       p->tail == 0 && p->body_left > 0 && p->body_left <= IMDS_EXPIRY_SCAN && p->body_left <= left;
}

/* That tail, buf[0..p->body_left), taken from one quote to the next, as the
 * byte-at-a-time parser's expiry states go: a quote ending "iration"", the
 * quote opening the value, the quote closing it (a value over
 * IMDS_EXPIRY_MAX bytes is dropped there too). Completes the response;
 * returns the bytes consumed. */
static IMDS_PARSER_OUTLINE __u32 imds_fast_expiry(void *ctx, struct imds_resp_parser *p, const __u8 *buf, __u64 now)
{
	__u32 len = IMDS_BOUND(p->body_left, IMDS_FAST_MAX - 1), from = 0;
	__u8 state = 0;

	for (__u32 k = 0; k < IMDS_EXPIRY_SCAN / 8 && state < 3; k++) {
		__u32 i = k * 8;
		__u64 quotes;

		if (i >= len)
			break;
		quotes = imds_bytes_eq(imds_word(buf, i), '"') & imds_below(len - i);
		for (__u32 b = 0; b < 8 && quotes && state < 3; b++) {
			__u32 j = i + imds_first_byte(quotes);

			quotes &= quotes - 1;
			if (state == 0) {
				if (j >= 7 && imds_word(buf, j - 7) == IMDS_TAIL_EXPIRATION_KEY_BYTES)
					state = 1;
			} else if (state == 1) {
				state = 2;
				from = j + 1;
			} else {
				state = 3;
				if (j - from <= IMDS_EXPIRY_MAX) {
					p->expiry_len = j - from;
					imds_fast_copy(p->expiry, IMDS_EXPIRY_MAX, buf, from, j - from);
					p->flags |= IMDS_RESP_HAS_EXPIRY;
				}
			}
		}
	}
	p->body_left = 0;
	imds_resp_complete(ctx, p, now);
	return len;
}

/* When a credentials body's tail starts at off and ends in this segment:
 * loads it (IMDS_LOAD) and takes it whole; returns the offset reached, off
 * itself when it did not apply. *loaded grows to the bytes of buf loaded. */
static IMDS_PARSER_INLINE __u32 imds_fast_tail_step(void *ctx, struct imds_resp_parser *p, __u8 *buf, __u32 off,
						    __u32 end, __u64 now, __u32 *loaded)
{
	__u32 n;

	if (off >= end || !imds_fast_tail(p, end - off))
		return off;
	n = ((p->body_left - 1) & (IMDS_FAST_MAX - 1)) + 1; /* 1..IMDS_EXPIRY_SCAN */
	if (IMDS_LOAD(ctx, off, buf, n))
		return off;
	if (*loaded < n)
		*loaded = n;
	IMDS_FAST_TAIL_TAKEN(ctx);
	return off + imds_fast_expiry(ctx, p, buf, now);
}

/* Skips the bytes from off that need no look (a request body, a response
 * body but its credentials tail); returns the offset reached. */
static IMDS_PARSER_INLINE __u32 imds_skip(void *ctx, int dir, struct imds_req_parser *req,
					  struct imds_resp_parser *resp, __u32 off, __u32 end, __u64 now)
{
	__u32 skip;

	if (off >= end)
		return end;
	skip = dir ? imds_resp_skippable(resp, end - off) : imds_req_skippable(req, end - off);
	if (!skip)
		return off;
	if (dir)
		imds_resp_skip(ctx, resp, skip, now);
	else
		imds_req_skip(req, skip);
	return off + skip;
}

/* A segment's first step, from off past the bytes that need no look
 * (imds_skip, which the caller ran): when a head starts at off, loads up to
 * IMDS_FAST_MAX bytes (IMDS_LOAD(ctx, off, buf, n), defined by the includer,
 * returns 0 on success) and parses the head whole, then skips its body; when
 * a credentials body's tail does, takes it whole (imds_fast_tail_step).
 * Returns the offset reached: off itself when the step declined (the
 * windows below take the same bytes). *loaded is how many bytes of buf hold
 * payload (the caller scrubs them). */
static IMDS_PARSER_INLINE __u32 imds_fast_step(void *ctx, int dir, struct imds_req_parser *req,
					       struct imds_resp_parser *resp, __u8 *buf, __u32 off, __u32 end,
					       __u64 now, __u32 *loaded)
{
	__u32 left, n, used;

	*loaded = 0;
	if (!IMDS_FAST_PATH || off >= end)
		return off;
	if (dir && resp->phase == IMDS_PH_BODY)
		return imds_fast_tail_step(ctx, resp, buf, off, end, now, loaded);
	if ((dir ? resp->phase : req->phase) != IMDS_PH_START)
		return off;
	left = end - off;
	n = left < IMDS_FAST_MAX ? left : IMDS_FAST_MAX;
	n = ((n - 1) & (IMDS_FAST_MAX - 1)) + 1; /* 1..IMDS_FAST_MAX, provably */
	if (IMDS_LOAD(ctx, off, buf, n))
		return off;
	*loaded = n;
	used = dir ? imds_fast_response(ctx, resp, buf, n, now) : imds_fast_request(ctx, req, buf, n, now);
	if (!used)
		return off;
	IMDS_FAST_TAKEN(ctx, dir);
	off = imds_skip(ctx, dir, req, resp, off + used, end, now);
	/* a credentials body in the head's segment: its tail too */
	return dir ? imds_fast_tail_step(ctx, resp, buf, off, end, now, loaded) : off;
}

/* One step over the payload bytes [off, end) of a segment: skips what needs
 * no look, then loads one window (IMDS_LOAD) and parses it byte by byte.
 * Returns the offset reached; *loaded as above. The kernel runs one step
 * per program run (tail calls chain the next), which keeps each verified
 * loop short. */
static IMDS_PARSER_INLINE __u32 imds_parse_window(void *ctx, int dir, struct imds_req_parser *req,
						  struct imds_resp_parser *resp, __u8 *buf, __u32 off,
						  __u32 end, __u64 now, __u32 *loaded)
{
	__u32 left, n;

	*loaded = 0;
	off = imds_skip(ctx, dir, req, resp, off, end, now);
	if (off >= end)
		return end;
	left = end - off;
	n = left < IMDS_SCAN_WINDOW ? left : IMDS_SCAN_WINDOW;
	n = ((n - 1) & (IMDS_SCAN_WINDOW - 1)) + 1; /* 1..window, provably */
	if (IMDS_LOAD(ctx, off, buf, n))
		return end;
	*loaded = n;
	if (dir)
		return off + imds_parse_response(ctx, resp, buf, n, now);
	return off + imds_parse_request(ctx, req, buf, n, now);
}

/* Whole segment as the kernel steps through it: the fast step (when
 * `fast`), then at most IMDS_SCAN_WINDOWS windows. Returns the offset
 * reached, short of end only when a head outgrew the windows. */
static IMDS_PARSER_INLINE __u32 imds_parse_stream(void *ctx, int dir, struct imds_req_parser *req,
						  struct imds_resp_parser *resp, __u8 *buf, __u32 off,
						  __u32 end, __u64 now, int fast)
{
	__u32 loaded;

	/* as the kernel's main program: body bytes that need no look, then the fast step */
	if (fast)
		off = imds_fast_step(ctx, dir, req, resp, buf, imds_skip(ctx, dir, req, resp, off, end, now), end,
				     now, &loaded);
	for (int w = 0; w < IMDS_SCAN_WINDOWS && off < end; w++)
		off = imds_parse_window(ctx, dir, req, resp, buf, off, end, now, &loaded);
	return off;
}

#endif /* IMDSWATCH_HTTP_PARSE_H */
