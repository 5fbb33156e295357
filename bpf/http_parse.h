/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* HTTP/1.x request and response parsers for metadata connections.
 *
 * One copy of the logic serves both sides: imdswatch.bpf.c runs it on the
 * bytes of each segment, and the unit tests run the very same code on byte
 * strings split at every point. The parsers are byte-at-a-time state machines
 * whose state lives in socket storage, so a head split across segments, a
 * keep-alive connection and pipelined requests all parse the same way.
 *
 * What leaves the parser is only: method, path, User-Agent, which headers
 * were present, status code, lengths, timestamps and the credentials'
 * "Expiration" value. Header values other than User-Agent (the IMDSv2 token
 * among them) and body bytes are looked at and dropped here.
 *
 * The includer defines, before including this file:
 *   IMDS_LOAD(ctx, off, buf, n)   copy n payload bytes at off into buf, 0 on success
 *   imds_on_request(void *ctx, struct imds_req_parser *p)   a head completed
 *   imds_on_response(void *ctx, struct imds_resp_parser *p, __u64 end_ns)
 *   imds_on_parse_error(void *ctx, __u8 reason, __u8 direction)
 * and IMDS_PARSER_INLINE (always_inline in BPF).
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

/* A body longer than this is skipped until its last IMDS_EXPIRY_SCAN bytes:
 * IMDS puts "Expiration" last, and the keys and secrets before it are never
 * scanned. */
#define IMDS_EXPIRY_SCAN 96
#define IMDS_MAX_LENGTH (1u << 24)

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
				imds_on_request(ctx, p);
				p->seq++;
				if (p->body_left > 0) {
					p->phase = IMDS_PH_BODY;
				} else {
					imds_req_reset(p);
				}
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

/* Response body bytes that need no look: all of them, except the last
 * IMDS_EXPIRY_SCAN of a credentials body whose expiry is still unseen. */
static IMDS_PARSER_INLINE __u32 imds_resp_skippable(const struct imds_resp_parser *p, __u32 left)
{
	__u32 keep = 0;

	if (p->phase == IMDS_PH_ERROR)
		return left;
	if (p->phase != IMDS_PH_BODY)
		return 0;
	if (((p->cred_mask >> (p->seq & 31)) & 1) && p->expiry_state < 3)
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

/* One step over the payload bytes [off, end) of a segment: skips what needs
 * no look, then loads one window (IMDS_LOAD(ctx, off, buf, n), defined by
 * the includer, returns 0 on success) and parses it. Returns the offset
 * reached. The kernel runs one step per program run (tail calls chain the
 * next), which keeps each verified loop short. */
static IMDS_PARSER_INLINE __u32 imds_parse_window(void *ctx, int dir, struct imds_req_parser *req,
						  struct imds_resp_parser *resp, __u8 *buf, __u32 off,
						  __u32 end, __u64 now)
{
	__u32 left, skip, n;

	if (off >= end)
		return end;
	left = end - off;
	skip = dir ? imds_resp_skippable(resp, left) : imds_req_skippable(req, left);
	if (skip) {
		if (dir)
			imds_resp_skip(ctx, resp, skip, now);
		else
			imds_req_skip(req, skip);
		off += skip;
		if (off >= end)
			return end;
		left = end - off;
	}
	n = left < IMDS_SCAN_WINDOW ? left : IMDS_SCAN_WINDOW;
	n = ((n - 1) & (IMDS_SCAN_WINDOW - 1)) + 1; /* 1..window, provably */
	if (IMDS_LOAD(ctx, off, buf, n))
		return end;
	if (dir)
		return off + imds_parse_response(ctx, resp, buf, n, now);
	return off + imds_parse_request(ctx, req, buf, n, now);
}

/* Whole segment, at most IMDS_SCAN_WINDOWS windows: returns the offset
 * reached, short of end only when a head outgrew the windows. */
static IMDS_PARSER_INLINE __u32 imds_parse_stream(void *ctx, int dir, struct imds_req_parser *req,
						  struct imds_resp_parser *resp, __u8 *buf, __u32 off,
						  __u32 end, __u64 now)
{
	for (int w = 0; w < IMDS_SCAN_WINDOWS && off < end; w++)
		off = imds_parse_window(ctx, dir, req, resp, buf, off, end, now);
	return off;
}

#endif /* IMDSWATCH_HTTP_PARSE_H */
