/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The contract between imdswatch.bpf.c and the agent: event records and
 * the limits both sides agree on. Fixed-width fields only; the C++ side
 * static_asserts the sizes (src/event_decoder.cpp). */
#ifndef IMDSWATCH_H
#define IMDSWATCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define IMDS_COMM_LEN 16
#define IMDS_PATH_MAX 128 /* request path bytes kept; longer paths are cut */
#define IMDS_UA_MAX 64    /* User-Agent bytes kept */
#define IMDS_EXPIRY_MAX 32 /* credentials "Expiration" value bytes kept */
#define IMDS_MAX_ENDPOINTS 8
#define IMDS_SCAN_WINDOW 128 /* payload bytes parsed per window */
#define IMDS_SCAN_WINDOWS 16 /* windows per segment: 2 KiB of heads at most */
#define IMDS_KNOWN_SLOTS 4096 /* cgroups the agent has placed, direct-mapped */
#define IMDS_SOCK_SETS 1024   /* metadata connections' state: sets of IMDS_SOCK_WAYS slots */
#define IMDS_SOCK_WAYS 4
/* Start-up: the ring is written a page per record (8-byte header + chunk),
 * at most this many pages per run of imds_prefault_ring. */
#define IMDS_PREFAULT_RECORD 4096
#define IMDS_PREFAULT_CHUNK (IMDS_PREFAULT_RECORD - 8)
#define IMDS_PREFAULT_PAGES_PER_RUN 256

enum imds_event_type {
	/* connect() to a watched endpoint, from a cgroup the agent has not
	 * placed yet (it wakes the agent); others send no record of their own */
	IMDS_EV_CONNECT = 1,
	IMDS_EV_ESTABLISHED_UNUSED, /* not sent: the first request or the close says the handshake completed */
	IMDS_EV_REQUEST,      /* a request head was parsed */
	IMDS_EV_RESPONSE,     /* a response completed (or its head, if unbounded) */
	IMDS_EV_CLOSE,        /* the client side left ESTABLISHED/SYN_SENT */
	IMDS_EV_RETRANS,      /* a segment on a metadata socket was retransmitted */
	IMDS_EV_PARSE_ERROR,  /* a byte stream could not be parsed */
	IMDS_EV_TTL_DROP,     /* the node dropped a metadata reply whose TTL ran out */
};

enum imds_method {
	IMDS_METHOD_OTHER = 0,
	IMDS_METHOD_GET,
	IMDS_METHOD_PUT,
	IMDS_METHOD_HEAD,
	IMDS_METHOD_POST,
};

/* Request flags: what the headers said, never what their values were. */
#define IMDS_REQ_HAS_TOKEN (1u << 0)     /* X-aws-ec2-metadata-token present */
#define IMDS_REQ_HAS_TOKEN_TTL (1u << 1) /* ...-token-ttl-seconds present */
#define IMDS_REQ_HAS_UA (1u << 2)
#define IMDS_REQ_PATH_CUT (1u << 3)   /* path longer than IMDS_PATH_MAX */
#define IMDS_REQ_CREDENTIALS (1u << 4) /* path names a role: response carries an expiry */
#define IMDS_REQ_AFTER_CLOSE (1u << 5) /* sent after the connection's close record: not followed */

/* Response flags. */
#define IMDS_RESP_NO_LENGTH (1u << 0) /* no Content-Length: end is the connection's end */
#define IMDS_RESP_HAS_EXPIRY (1u << 1)

/* Close flags: what the socket went through before the client left. */
#define IMDS_CLOSE_ESTABLISHED (1u << 0)
#define IMDS_CLOSE_RST_RECEIVED (1u << 1)
#define IMDS_CLOSE_PEER_FIN (1u << 2) /* the server closed first */
#define IMDS_CLOSE_EVICTED (1u << 3)  /* a new connection took its kernel slot: no longer followed */
#define IMDS_CLOSE_FIRST_REQUEST_LOST (1u << 4) /* the record of request 0 was lost (ring full) */
#define IMDS_CLOSE_HALF_CLOSED (1u << 5) /* the client shut its sending side first (SHUT_WR) */

enum imds_parse_error {
	IMDS_PERR_NONE = 0,
	IMDS_PERR_BAD_REQUEST_LINE, /* not "METHOD SP PATH SP HTTP/x" */
	IMDS_PERR_BAD_STATUS_LINE,  /* not "HTTP/x.y NNN" */
	IMDS_PERR_HEADER_TOO_LONG,  /* head longer than the scan windows */
	IMDS_PERR_BAD_LENGTH,       /* Content-Length not a number */
	IMDS_PERR_SEQ_GAP,          /* bytes missing in the stream (out of order) */
	IMDS_PERR_UNEXPECTED_RESPONSE, /* response bytes with no request pending */
	IMDS_PERR_CHUNKED,          /* chunked bodies are not followed */
	IMDS_PERR__COUNT,
};

/* Why a record was lost in the kernel; counted per CPU in drop_counts. */
enum imds_drop_reason {
	IMDS_DROP_RINGBUF_FULL = 0,
	IMDS_DROP_SOCK_EVICTED, /* a new connection took a live one's slot */
	IMDS_DROP_SCRATCH,      /* per-CPU scratch buffer unavailable */
	IMDS_DROP_LOAD_BYTES,   /* bpf_skb_load_bytes failed */
	IMDS_DROP_TAIL_CALL,    /* the next window's program could not be called */
	IMDS_DROP__COUNT,
};

/* Common header: every event starts with it. */
struct imds_event_hdr {
	__u8 type;
	__u8 family; /* AF_INET or AF_INET6 of the metadata socket */
	__u16 dport; /* host byte order */
	__u32 tgid;  /* process that connected */
	__u64 ts_ns; /* bpf_ktime_get_ns() */
	__u64 sock_id; /* socket cookie: joins events of one connection */
	__u64 cgroup_id; /* cgroup v2 id of the connecting process */
};

struct imds_connect_event {
	struct imds_event_hdr hdr;
	__u32 daddr[4]; /* network byte order; v4 in daddr[0] */
	char comm[IMDS_COMM_LEN];
};

struct imds_request_event {
	struct imds_event_hdr hdr;
	__u64 start_ns; /* first byte of the request left the socket */
	__u32 seq;      /* n-th request on this connection, from 0 */
	__u8 method;
	__u8 flags;
	__u8 path_len;
	__u8 ua_len;
	char comm[IMDS_COMM_LEN];
	char path[IMDS_PATH_MAX];
	char ua[IMDS_UA_MAX];
};

struct imds_response_event {
	struct imds_event_hdr hdr;
	__u64 first_byte_ns; /* first response byte arrived */
	__u64 end_ns;        /* last response byte arrived */
	__u32 seq;           /* matches the request's seq */
	__u16 status;
	__u8 flags;
	__u8 expiry_len;
	char expiry[IMDS_EXPIRY_MAX]; /* e.g. 2026-11-25T21:00:00Z; nothing else of the body */
};

/* The records after a connect carry what the agent needs to attribute
 * them (cgroup, process, comm): a connection needs no record of its own
 * before its first request or its close. */
struct imds_close_event {
	struct imds_event_hdr hdr;
	__u32 requests;  /* request heads parsed on this connection */
	__u32 responses; /* responses completed */
	__u32 retransmits;
	__u16 syn_rtos; /* SYN/data RTO expiries seen */
	__u8 flags;
	__u8 old_state; /* TCP state left */
	char comm[IMDS_COMM_LEN];
};

struct imds_retrans_event {
	struct imds_event_hdr hdr;
	char comm[IMDS_COMM_LEN];
};

struct imds_parse_error_event {
	struct imds_event_hdr hdr;
	__u8 reason; /* enum imds_parse_error */
	__u8 direction; /* 0 request, 1 response */
	__u8 pad[6];
};

/* A reply from a watched endpoint freed with TTL/hop limit <= 1 on this node:
 * the forwarding path dropped it one hop short of daddr (the pod). */
struct imds_ttl_drop_event {
	struct imds_event_hdr hdr; /* family, dport = the pod's port; no socket, no cgroup */
	__u32 daddr[4];            /* network byte order; v4 in daddr[0] */
};

/* The slot of cgroup id in known_cgroups (both sides compute it): the top
 * bits of a multiplicative hash, since ids are inode numbers, close together. */
static inline __u32 imds_known_slot(__u64 cgroup_id)
{
	return (__u32)((cgroup_id * 0x9e3779b97f4a7c15ull) >> 52) & (IMDS_KNOWN_SLOTS - 1);
}

/* The set of a connection's state, by socket cookie (the top 10 bits of a
 * multiplicative hash: cookies are handed out in per-CPU runs). */
static inline __u32 imds_sock_set(__u64 cookie)
{
	return (__u32)((cookie * 0x9e3779b97f4a7c15ull) >> 54) & (IMDS_SOCK_SETS - 1);
}

struct imds_endpoint {
	__u32 addr[4]; /* network byte order; v4 in addr[0] */
	__u16 port;    /* network byte order */
	__u16 family;
};

/* The bit of a watched address, of a peer address folded to 32 bits: v4
 * as it is, v6 its four words xored (a v4-mapped one folds to the v4 address
 * xored with the mapping word, so v4 endpoints set that bit too). */
static inline __u32 imds_addr_bit(__u32 folded)
{
	return (__u32)(folded * 0x9e3779b1u) >> 26;
}

/* The value the per-packet programs carry in place of the watched addresses'
 * bits until the loader writes the bits over it ("imdsbits"). */
#define IMDS_ADDR_BITS_PLACEHOLDER 0x696d647362697473

/* Where the forwarding paths' code is, for the raw_tp kfree_skb filter of
 * kernels without a drop reason (before 5.17): up to IMDS_FWD_RANGES
 * [start, start + size) ranges of ip_forward, ip6_forward and their
 * compiler-split parts, from /proc/kallsyms. The loader writes them over
 * these placeholders ("imdsfwd0" a start, "imdszwd0" a size, ...); an
 * unused range has size 0. */
#define IMDS_FWD_RANGES 4
#define IMDS_FWD0_START_PLACEHOLDER 0x696d647366776430
#define IMDS_FWD0_SIZE_PLACEHOLDER 0x696d64737a776430
#define IMDS_FWD1_START_PLACEHOLDER 0x696d647366776431
#define IMDS_FWD1_SIZE_PLACEHOLDER 0x696d64737a776431
#define IMDS_FWD2_START_PLACEHOLDER 0x696d647366776432
#define IMDS_FWD2_SIZE_PLACEHOLDER 0x696d64737a776432
#define IMDS_FWD3_START_PLACEHOLDER 0x696d647366776433
#define IMDS_FWD3_SIZE_PLACEHOLDER 0x696d64737a776433

/* The endpoints again, as the per-packet and per-connect filters want them:
 * distinct ports and distinct addresses per family, counts and the v4 list in
 * one cache line (the first 60 bytes). A match on port and address here is
 * only a candidate where endpoints use different ports; endpoints[] decides. */
struct imds_filter {
	__u32 nr_ports;
	__u32 nr_v4;
	__u32 nr_v6;
	__u16 ports[IMDS_MAX_ENDPOINTS]; /* network byte order */
	__u32 v4[IMDS_MAX_ENDPOINTS];    /* network byte order */
	__u32 v6[IMDS_MAX_ENDPOINTS][4];
};

#endif /* IMDSWATCH_H */
