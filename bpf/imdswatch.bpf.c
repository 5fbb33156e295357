// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* imdswatch kernel side: sees every TCP connection to a metadata endpoint,
 * parses its HTTP in place and emits compact events. Hooks (all at the
 * cgroup v2 root, all present on 5.10+ and on kernels without kprobes):
 *   cgroup/connect4|6   mark metadata sockets (a slot keyed by cookie), once per connect
 *   sockops             handshake, retransmits, RTOs and close, marked sockets only
 *   cgroup_skb egress   request heads; ingress: status lines, lengths, expiry
 *   tp_btf/kfree_skb    (raw_tp before 5.17) metadata replies dying in forwarding
 * Each hook's attached program is a filter (the end of this file): other
 * traffic pays a port compare, with an immediate when every endpoint is on
 * port 80 (the loader then picks the filters without the _any suffix), and on
 * a watched port the address's bit, an immediate too. What passes goes by a
 * tail call to the hook's work (*_work): the exact address compare, and only
 * for a metadata peer the socket's slot. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include "imdswatch.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define SOCK_STREAM 1
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_TIME_WAIT 6
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_CLOSING 11
#define RCV_SHUTDOWN 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader before load. */
const volatile struct imds_endpoint endpoints[IMDS_MAX_ENDPOINTS] = {};
const volatile __u32 nr_endpoints = 0;
/* endpoints[] as the filters read it: one cache line for ports and v4 */
const volatile struct imds_filter filter __attribute__((aligned(64))) = {};
/* 0: wake the reader at every record (`imdswatch trace`); else the agent
 * drains the ring on a timer and is woken only once this many bytes wait. */
const volatile __u32 wakeup_bytes = 0;
/* Set by the loader where sockops may read its socket (bpf_skc_to_tcp_sock:
 * 5.10+, CAP_PERFMON): a client's half-close then does not end an exchange
 * that still waits for its response. */
const volatile bool half_close_followed = false;

/* The parser calls back into this file with ctx = the segment being parsed.
 * Its hot steps are inlined; its bulky or rare ones (copies, the expiry) and
 * the records and drop counts it emits are BPF subprograms: one copy of their
 * code instead of one per call site. A metadata request runs with cold
 * caches (the client and server ran in between), so every line of code it
 * crosses costs: this took the ingress first step from 10.6 to 6.0 KiB of JIT
 * output and ~2 % off a request (bench/README.md, 2026-12-02 morning). */
#define IMDS_PARSER_INLINE __always_inline
#define IMDS_PARSER_OUTLINE __noinline
struct imds_req_parser;
struct imds_resp_parser;
static __always_inline void imds_on_request(void *ctx, struct imds_req_parser *p, const __u8 *buf, __u32 ua_from);
static __always_inline void imds_on_response(void *ctx, struct imds_resp_parser *p, __u64 end_ns);
static __always_inline void imds_on_parse_error(void *ctx, __u8 reason, __u8 direction);
struct seg_ctx;
static __always_inline int load_payload(struct seg_ctx *c, __u32 off, __u8 *buf, __u32 n);
#define IMDS_LOAD(ctx, off, buf, n) load_payload((ctx), (off), (buf), (n))
#include "http_parse.h"

/* A closed connection's slot keeps its cookie, with this bit: its late
 * segments still find it, and free and taken are one word, which a claim
 * swaps atomically (sock_claim). Cookies count up from 1. */
#define IMDS_SOCK_CLOSED (1ull << 63)

struct imds_sock {
	__u64 sock_id; /* first: a claim writes the rest after it (sock_claim) */
	__u64 cgroup_id;
	__u64 connect_ns;
	__u64 connect_id; /* the cookie whose claim wrote connect_ns (slot_free) */
	__u32 tgid;
	__u32 tx_next_seq; /* next client byte expected: drops retransmitted bytes */
	__u32 rx_next_seq;
	__u32 retransmits;
	__u16 rtos;
	__u16 dport;
	__u8 family;
	__u8 seq_valid; /* bit 0 tx, bit 1 rx */
	__u8 close_flags;
	char comm[IMDS_COMM_LEN];
	struct imds_req_parser req;
	struct imds_resp_parser resp;
};

/* A claim swaps sock_id, then writes connect_ns and cgroup_id, zeroes
 * the rest from tgid on, a whole number of u64s, and last connect_id. */
#define IMDS_SOCK_RESET_FROM __builtin_offsetof(struct imds_sock, tgid)
_Static_assert(__builtin_offsetof(struct imds_sock, sock_id) == 0, "a claim resets the slot behind sock_id");
_Static_assert(IMDS_SOCK_RESET_FROM == 32 && sizeof(struct imds_sock) % 8 == 0, "the reset is in u64s");

/* Metadata connections' state, in a preallocated table of four-way sets
 * keyed by socket cookie. Socket storage was dearer: each connect paid two
 * allocations charged to a memory cgroup (connect4 2.5-3.9 us a run here,
 * 1.3-1.7 with the table), each lookup a walk through the socket's storage;
 * a slot here is one inlined load. A set (imds_sock_set) holds four live
 * connections; a fifth evicts the one connected first (counted). Two ways
 * were too few: 500 keep-alive connections on a node would fill ~5 sets
 * past two, and even 8 parallel short ones lost one of 10,000 now and then.
 * Four: ~0.2 sets past four at 500. A slot is free once its
 * connection is closed (a response still arriving after the client's FIN
 * is lost if a new connection takes the slot meanwhile); a cookie is never
 * reused, so a stale slot matches no socket. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_SOCK_SETS * IMDS_SOCK_WAYS);
	__type(key, __u32);
	__type(value, struct imds_sock);
} imds_socks SEC(".maps");

/* The key of a cookie's way in imds_socks. */
static __always_inline __u32 sock_slot(__u64 cookie, __u32 way)
{
	return imds_sock_set(cookie) * IMDS_SOCK_WAYS + way;
}

static __always_inline struct imds_sock *sock_way(__u64 cookie, __u32 way)
{
	__u32 slot = sock_slot(cookie, way);

	return bpf_map_lookup_elem(&imds_socks, &slot);
}

/* The state of the connection with this cookie, if it has one, and its
 * slot (a key of imds_socks). */
static __always_inline struct imds_sock *sock_find_slot(__u64 cookie, __u32 *slot)
{
	struct imds_sock *s;

	if (!cookie)
		return NULL;
	for (__u32 way = 0; way < IMDS_SOCK_WAYS; way++) {
		s = sock_way(cookie, way);
		if (s && (s->sock_id & ~IMDS_SOCK_CLOSED) == cookie) {
			*slot = sock_slot(cookie, way);
			return s;
		}
	}
	return NULL;
}

static __always_inline struct imds_sock *sock_find(__u64 cookie)
{
	__u32 slot;

	return sock_find_slot(cookie, &slot);
}

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024); /* resized by the loader */
} events SEC(".maps");

/* Cgroups whose path the agent knows (it writes each id into its slot,
 * imds_known_slot, after placing it); their callers' records wait for the
 * drain timer. Direct-mapped: an array slot is one inlined load, where a
 * hash lookup walked cold buckets (~600 ns a connect here). Two cgroups
 * sharing a slot evict each other: the other's next connect wakes the
 * agent once more, which writes it back. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IMDS_KNOWN_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} known_cgroups SEC(".maps");

static __always_inline bool cgroup_known(__u64 cgroup_id)
{
	__u32 slot = imds_known_slot(cgroup_id);
	__u64 *id = bpf_map_lookup_elem(&known_cgroups, &slot);

	return id && *id == cgroup_id;
}

/* How a record is committed. A wakeup per record costs more than all the
 * rest of a metadata request's programs: its irq_work raises a self-IPI (a
 * VM exit in a guest) and then IPIs the reader's CPU, inside the program.
 * So records wait for the reader's drain timer, unless the ring is filling.
 * A global function: the verifier checks it once, and its result adds no
 * branch to the states of the parse loops that emit records (inlined, the
 * branch pushed imds_ingress past the verifier's 1M-instruction budget). */
__noinline __u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									       : BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(void *e)
{
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* Per-CPU working area of one segment's parse, kept across tail calls (a
 * program runs to its end on one CPU without preemption). One per
 * direction: a receive softirq may interrupt a send's parse. */
struct scratch {
	__u8 buf[IMDS_FAST_BUF];
	__u32 off; /* next payload byte to look at */
	__u32 end; /* payload end */
	__u32 windows; /* windows parsed so far */
	__u32 loaded;  /* payload bytes in buf (in memory: the verifier then need not
			* tell the fast path's loads from a window's) */
	__u64 now;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* The window programs of each direction, filled by the loader: a segment's
 * next windows, each program verified on its own, which keeps each inside
 * the verifier's budget. A segment's first step (the fast path: a whole
 * head at once) is no tail call: egress runs it inline (the request parse
 * fits beside the segment's path), ingress calls imds_ingress_first_step. One
 * map per direction: a program array takes programs of one attach type
 * only. */
enum { IMDS_STEP_NEXT = 0 };

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} next_egress_window SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} next_ingress_window SEC(".maps");

/* The work behind each attached filter, one program each (key 0), filled
 * by the loader: the filters below tail-call it for a candidate. */
#define WORK_SLOT(name)                                 \
	struct {                                        \
		__uint(type, BPF_MAP_TYPE_PROG_ARRAY);  \
		__uint(max_entries, 1);                 \
		__type(key, __u32);                     \
		__type(value, __u32);                   \
	} name SEC(".maps")

WORK_SLOT(connect4_work);
WORK_SLOT(connect6_work);
WORK_SLOT(sockops_work);
WORK_SLOT(egress_work);
WORK_SLOT(ingress_work);
WORK_SLOT(kfree_work);
/* A program array takes the type of the first program that uses it: the raw
 * tracepoint's filter needs its own (bpftool loads every program at once). */
WORK_SLOT(kfree_raw_work);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, IMDS_DROP__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

static __always_inline void count_drop_inline(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&drop_counts, &reason);

	if (n)
		*n += 1;
}

static __noinline void count_drop(__u32 reason)
{
	count_drop_inline(reason);
}

static __always_inline void fill_hdr(struct imds_event_hdr *h, const struct imds_sock *s, __u8 type, __u64 now)
{
	h->type = type;
	h->family = s->family;
	h->dport = s->dport;
	h->tgid = s->tgid;
	h->ts_ns = now;
	h->sock_id = s->sock_id & ~IMDS_SOCK_CLOSED;
	h->cgroup_id = s->cgroup_id;
}

/* A retransmitted segment: rare, and it may come before the connection's
 * first request (a SYN's), so it carries its attribution itself. */
static __noinline void emit_retransmit(const struct imds_sock *s)
{
	struct imds_retrans_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_RETRANS, bpf_ktime_get_ns());
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	submit(e);
}

/* Put `word` in a slot's sock_id, if it still holds `seen`: a claim (the
 * new cookie) or a close (the cookie with IMDS_SOCK_CLOSED). Connect
 * programs run preemptible, on any CPU: two may pick the same free slot,
 * and without the swap the later store silently took the earlier
 * connection's (its connect handled, the rest of it never); a close
 * beside an eviction put the closed word back over the slot's new owner. */
static __always_inline bool slot_swap(struct imds_sock *s, __u64 seen, __u64 word, bool cas)
{
	if (cas)
		return __sync_val_compare_and_swap(&s->sock_id, seen, word) == seen;
	s->sock_id = word;
	return true;
}

/* The exchange on connection `id` (a live cookie) is over: what it
 * counted, and how it ended (`flags` adds to what the connection saw).
 * Once only: the slot is marked closed last, by a swap from `id`. From
 * then on a connect on another CPU may take the slot, and the record
 * would carry that connection's fields. Where the swap finds another word
 * (an eviction beside this close marked it first, or a claim took the
 * slot meanwhile), the record is discarded. */
static __always_inline void emit_close(struct imds_sock *s, __u64 id, __u8 old_state, __u8 flags, bool cas)
{
	struct imds_close_event *e;

	if ((id & IMDS_SOCK_CLOSED) || s->sock_id != id)
		return;
	/* The slot outlives the socket: the bytes a parse in flight keeps (a
	 * credentials body's last 8, maybe of a Token) must not. */
	s->req.tail = 0;
	s->resp.tail = 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		slot_swap(s, id, id | IMDS_SOCK_CLOSED, cas);
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_CLOSE, bpf_ktime_get_ns());
	e->requests = s->req.seq;
	e->responses = s->resp.seq;
	e->retransmits = s->retransmits;
	e->syn_rtos = s->rtos;
	e->flags = s->close_flags | flags;
	e->old_state = old_state;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	if (!slot_swap(s, id, id | IMDS_SOCK_CLOSED, cas)) {
		bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
		return;
	}
	submit(e);
}

static __always_inline __u8 method_id(const struct imds_req_parser *p)
{
	if (p->method_len == 3 && p->method[0] == 'G' && p->method[1] == 'E' && p->method[2] == 'T')
		return IMDS_METHOD_GET;
	if (p->method_len == 3 && p->method[0] == 'P' && p->method[1] == 'U' && p->method[2] == 'T')
		return IMDS_METHOD_PUT;
	if (p->method_len == 4 && p->method[0] == 'H')
		return IMDS_METHOD_HEAD;
	if (p->method_len == 4 && p->method[0] == 'P' && p->method[1] == 'O')
		return IMDS_METHOD_POST;
	return IMDS_METHOD_OTHER;
}

/* The segment being parsed, handed through the parser as its ctx: the
 * callbacks reuse its socket state and its timestamp. */
struct seg_ctx {
	struct __sk_buff *skb;
	struct imds_sock *s;
	__u64 now;
};

/* buf, ua_from: where the fast path left the path and User-Agent, or NULL
 * (they are in the parser's state): as imds_on_request takes them. */
static __noinline int emit_request(struct seg_ctx *c, const __u8 *buf, __u32 ua_from)
{
	struct imds_sock *s = c->s;
	struct imds_request_event *e;
	struct imds_req_parser *p;

	p = &s->req;
	imds_note_request(&s->resp, p);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		/* request 0 says the handshake completed: now the close must */
		if (!p->seq)
			s->close_flags |= IMDS_CLOSE_FIRST_REQUEST_LOST;
		return 0;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_REQUEST, c->now);
	e->start_ns = p->start_ns;
	e->seq = p->seq;
	e->method = method_id(p);
	/* a closed slot still parses what the socket sends (bytes queued
	 * before the close, a head the server's FIN overtook): its close
	 * record has gone, so the agent does not open the connection again */
	e->flags = p->flags | (s->sock_id & IMDS_SOCK_CLOSED ? IMDS_REQ_AFTER_CLOSE : 0);
	e->path_len = p->path_len < IMDS_PATH_MAX ? p->path_len : IMDS_PATH_MAX;
	e->ua_len = p->ua_len < IMDS_UA_MAX ? p->ua_len : IMDS_UA_MAX;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	imds_request_text(e->path, e->ua, p, buf, ua_from);
	submit(e);
	return 0;
}

static __noinline void send_parse_error(struct imds_sock *s, __u8 reason, __u8 direction, __u64 now)
{
	struct imds_parse_error_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_PARSE_ERROR, now);
	e->reason = reason;
	e->direction = direction;
	submit(e);
}

static __always_inline int emit_parse_error(struct seg_ctx *c, __u32 reason, __u32 direction)
{
	send_parse_error(c->s, reason, direction, c->now);
	return 0;
}

static __noinline int emit_response(struct seg_ctx *c, __u64 end_ns)
{
	struct imds_sock *s = c->s;
	struct imds_response_event *e;
	struct imds_resp_parser *p;

	p = &s->resp;
	if (p->seq >= s->req.seq) {
		/* nothing asked: a server speaking first, or a lost request head */
		send_parse_error(s, IMDS_PERR_UNEXPECTED_RESPONSE, 1, c->now);
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return 0;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_RESPONSE, c->now);
	e->first_byte_ns = p->first_ns;
	e->end_ns = end_ns;
	e->seq = p->seq;
	e->status = p->status;
	e->flags = p->flags;
	e->expiry_len = (p->flags & IMDS_RESP_HAS_EXPIRY) ? p->expiry_len : 0;
	__builtin_memcpy(e->expiry, p->expiry, sizeof(e->expiry));
	submit(e);
	return 0;
}

static __always_inline int load_payload(struct seg_ctx *c, __u32 off, __u8 *buf, __u32 n)
{
	if (bpf_skb_load_bytes(c->skb, off, buf, n)) {
		count_drop(IMDS_DROP_LOAD_BYTES);
		return -1;
	}
	return 0;
}

static __always_inline void imds_on_request(void *ctx, struct imds_req_parser *p, const __u8 *buf, __u32 ua_from)
{
	emit_request(ctx, buf, ua_from);
}

static __always_inline void imds_on_response(void *ctx, struct imds_resp_parser *p, __u64 end_ns)
{
	emit_response(ctx, end_ns);
}

static __always_inline void imds_on_parse_error(void *ctx, __u8 reason, __u8 direction)
{
	emit_parse_error(ctx, reason, direction);
}

/* ---- filters ---- */

/* Port 80, network byte order: every production endpoint's port (EC2 v4 and
 * v6, ECS, EKS Pod Identity). When all watched endpoints use it, the loader
 * picks the programs that compare with it as an immediate: other traffic
 * then touches no map memory (on hooks as rare as connect, a cold .rodata
 * line costs more than the whole filter). */
#define PORT80_BE bpf_htons(80)

/* __sk_buff.remote_port is the port in network byte order in a u32, which
 * little-endian kernels fill shifted left by 16 (bpf_sock_addr.user_port is
 * not shifted). The object's byte order is the kernel's. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SKB_PORT(be16) ((__u32)(be16) << 16)
#define SKB_PORT_BE16(v) ((__u16)((v) >> 16))
#else
#define SKB_PORT(be16) ((__u32)(be16))
#define SKB_PORT_BE16(v) ((__u16)(v))
#endif

/* filter.* counts are read once: the verifier knows them (a frozen map) and
 * cuts the unrolled compares past them. */
static __always_inline bool port_listed(__u16 port)
{
	__u32 n = filter.nr_ports;

	for (int i = 0; i < IMDS_MAX_ENDPOINTS; i++) {
		if (i >= n)
			break;
		if (filter.ports[i] == port)
			return true;
	}
	return false;
}

static __always_inline bool v4_listed(__u32 addr)
{
	__u32 n = filter.nr_v4;

	for (int i = 0; i < IMDS_MAX_ENDPOINTS; i++) {
		if (i >= n)
			break;
		if (filter.v4[i] == addr)
			return true;
	}
	return false;
}

static __always_inline bool v6_listed(const __u32 *a)
{
	__u32 n = filter.nr_v6;

	for (int i = 0; i < IMDS_MAX_ENDPOINTS; i++) {
		if (i >= n)
			break;
		if (filter.v6[i][0] == a[0] && filter.v6[i][1] == a[1] && filter.v6[i][2] == a[2] &&
		    filter.v6[i][3] == a[3])
			return true;
	}
	return false;
}

static __always_inline bool v4_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* ---- socket marking ---- */

/* The exact test (family, address and port of one endpoint). */
static __always_inline bool endpoint_match(__u16 family, const __u32 *addr, __u16 port)
{
	for (int i = 0; i < IMDS_MAX_ENDPOINTS; i++) {
		if (i >= nr_endpoints)
			break;
		if (endpoints[i].port != port || endpoints[i].family != family)
			continue;
		if (endpoints[i].addr[0] != addr[0])
			continue;
		if (family == AF_INET)
			return true;
		if (endpoints[i].addr[1] == addr[1] && endpoints[i].addr[2] == addr[2] &&
		    endpoints[i].addr[3] == addr[3])
			return true;
	}
	return false;
}

/* TCP gives up a handshake after tcp_syn_retries (6: 127 s). A connect that
 * failed before its SYN (no route) gets no close callback: its slot is free
 * once no handshake could still be going on. */
#define HANDSHAKE_MAX_NS (130ull * 1000000000)

static __always_inline bool slot_free(const struct imds_sock *s, __u64 id, __u64 now)
{
	/* The age counts once the claim of `id` has written it: until then
	 * connect_ns and close_flags are the last connection's, maybe a failed
	 * handshake long gone. Signed: a connect on another CPU may have taken
	 * the slot after this one read the clock, and would read as a
	 * handshake 584 years old. */
	return !id || (id & IMDS_SOCK_CLOSED) ||
	       (s->connect_id == id && !(s->close_flags & IMDS_CLOSE_ESTABLISHED) &&
		(__s64)(now - s->connect_ns) > (__s64)HANDSHAKE_MAX_NS);
}

/* A slot for a new connection: its own (connecting again while live, if
 * that way comes before the first free one), the first free one (one
 * another CPU takes first is passed over), or else the oldest live
 * connection's, whose state is lost (counted, as is a claim that loses
 * every race). One pass: a socket connecting again after a connect that
 * failed before its SYN (no close callback) may take an earlier free way;
 * lookups find that one first, and the stale way frees itself after
 * HANDSHAKE_MAX_NS. */
static __always_inline struct imds_sock *sock_claim(__u64 cookie, __u64 now, bool cas)
{
	struct imds_sock *s = NULL, *oldest = NULL, *taken = NULL;
	__u64 seen;

	if (!cookie)
		return NULL;
	for (__u32 way = 0; way < IMDS_SOCK_WAYS; way++) {
		s = sock_way(cookie, way);
		if (!s)
			return NULL;
		seen = s->sock_id;
		if (seen == cookie)
			return s;
		if (slot_free(s, seen, now)) {
			if (slot_swap(s, seen, cookie, cas)) {
				taken = s;
				break;
			}
			continue;
		}
		if (!oldest || s->connect_ns < oldest->connect_ns)
			oldest = s;
	}
	if (!taken) {
		/* the agent forgets a connection now, rather than when it idles out */
		count_drop(IMDS_DROP_SOCK_EVICTED);
		if (!oldest)
			return NULL;
		seen = oldest->sock_id; /* closed since the pass, maybe: then no record */
		emit_close(oldest, seen, oldest->close_flags & IMDS_CLOSE_ESTABLISHED ? TCP_ESTABLISHED : TCP_SYN_SENT,
			   IMDS_CLOSE_EVICTED, cas);
		if (!slot_swap(oldest, seen | IMDS_SOCK_CLOSED, cookie, cas))
			return NULL;
		taken = oldest;
	}
	/* The rest of the slot is reset behind the cookie, connect_id last:
	 * only then may another claim judge the slot's age. One copy of the
	 * reset: each inlined copy is ~40 stores of connect4's cold code. */
	taken->connect_ns = now;
	taken->cgroup_id = 0;
	/* through a __u64 pointer: clang then writes 8 bytes a store, not 1 */
	__builtin_memset((__u64 *)taken + IMDS_SOCK_RESET_FROM / 8, 0, sizeof(*taken) - IMDS_SOCK_RESET_FROM);
	taken->connect_id = cookie;
	return taken;
}

static __always_inline void track_socket(struct bpf_sock_addr *ctx, __u8 family, const __u32 *addr,
					 __u16 port, bool cas)
{
	__u64 now = bpf_ktime_get_ns();
	struct imds_connect_event *e;
	struct imds_sock *s;

	s = sock_claim(bpf_get_socket_cookie(ctx), now, cas);
	if (!s)
		return;
	s->cgroup_id = bpf_get_current_cgroup_id();
	s->tgid = bpf_get_current_pid_tgid() >> 32;
	s->family = family;
	s->dport = bpf_ntohs(port);
	bpf_get_current_comm(s->comm, sizeof(s->comm));

	/* No record for a caller from a cgroup the agent has placed: the
	 * connection's later records carry all it needs (22 % of this
	 * program's time a run went to the record). Any other caller wakes
	 * the agent now: it learns the cgroup's path from /proc/PID/cgroup
	 * while the caller lives (a short-lived pod is gone before the drain
	 * timer). */
	if (cgroup_known(s->cgroup_id))
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return;
	}
	fill_hdr(&e->hdr, s, IMDS_EV_CONNECT, now);
	e->daddr[0] = addr[0];
	e->daddr[1] = family == AF_INET6 ? addr[1] : 0;
	e->daddr[2] = family == AF_INET6 ? addr[2] : 0;
	e->daddr[3] = family == AF_INET6 ? addr[3] : 0;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, wakeup_bytes ? BPF_RB_FORCE_WAKEUP : 0);
}

static __always_inline void load_ip6(struct bpf_sock_addr *ctx, __u32 *addr)
{
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
}

/* The connect work behind the filters (imds_connect4/6 below): the exact
 * endpoint test, then the socket's slot and its record. A v4-mapped
 * address (::ffff:a.b.c.d) on a dual-stack socket is the v4 endpoint. */
static __always_inline int track_connect4(struct bpf_sock_addr *ctx, bool cas)
{
	__u32 addr[4] = {ctx->user_ip4, 0, 0, 0};
	__u16 port = ctx->user_port;

	if (endpoint_match(AF_INET, addr, port))
		track_socket(ctx, AF_INET, addr, port, cas);
	return 1;
}

static __always_inline int track_connect6(struct bpf_sock_addr *ctx, bool cas)
{
	__u16 port = ctx->user_port;
	__u32 addr[4];

	load_ip6(ctx, addr);
	if (v4_mapped(addr)) {
		__u32 v4[4] = {addr[3], 0, 0, 0};

		if (endpoint_match(AF_INET, v4, port))
			track_socket(ctx, AF_INET, v4, port, cas);
		return 1;
	}
	if (endpoint_match(AF_INET6, addr, port))
		track_socket(ctx, AF_INET6, addr, port, cas);
	return 1;
}

/* Each in two builds, the loader loading one: with BPF_CMPXCHG (5.12+),
 * and with a plain store where the verifier refuses the instruction even
 * in dead code (5.10, 5.11: "BPF_STX uses reserved fields"). */
#define CONNECT_WORK(name, hook, track, cas)         \
	SEC(hook)                                     \
	int name(struct bpf_sock_addr *ctx)           \
	{                                             \
		return track(ctx, (cas));             \
	}

CONNECT_WORK(imds_connect4_work, "cgroup/connect4", track_connect4, true)
CONNECT_WORK(imds_connect6_work, "cgroup/connect6", track_connect6, true)
CONNECT_WORK(imds_connect4_work_store, "cgroup/connect4", track_connect4, false)
CONNECT_WORK(imds_connect6_work_store, "cgroup/connect6", track_connect6, false)

/* ---- connection life (sockops) ---- */

/* The first step out of SYN_SENT or ESTABLISHED ends the exchange; after a
 * half-close (the work kept the callbacks, below), the server's FIN or the
 * socket's end. */
static __always_inline bool ends_exchange(__u32 old_state, __u32 new_state)
{
	if (old_state == TCP_SYN_SENT || old_state == TCP_ESTABLISHED)
		return new_state == TCP_CLOSE || new_state == TCP_FIN_WAIT1 || new_state == TCP_CLOSE_WAIT;
	return (old_state == TCP_FIN_WAIT1 || old_state == TCP_FIN_WAIT2) &&
	       (new_state == TCP_TIME_WAIT || new_state == TCP_CLOSING || new_state == TCP_CLOSE);
}

/* The client shut only its sending side (shutdown(SHUT_WR)): close() marks
 * the receiving side shut too before the socket leaves ESTABLISHED. */
static __always_inline bool only_sending_shut(struct bpf_sock_ops *ops)
{
	struct bpf_sock *sk = ops->sk;
	struct tcp_sock *tp;

	if (!sk)
		return false;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return false;
	return !(BPF_CORE_READ_BITFIELD(&tp->inet_conn.icsk_inet.sk, sk_shutdown) & RCV_SHUTDOWN);
}

/* A state change ends_exchange let through: does it end this exchange? A
 * client that half-closes with a response owed still reads it: its
 * exchange ends at the server's FIN or the socket's end, not at its own. */
static __always_inline bool exchange_over(struct imds_sock *s, struct bpf_sock_ops *ops, __u32 old_state,
					  __u32 new_state)
{
	if (s->close_flags & IMDS_CLOSE_HALF_CLOSED)
		return true; /* ends_exchange let only the end of one through */
	if (half_close_followed && old_state == TCP_ESTABLISHED && new_state == TCP_FIN_WAIT1 &&
	    s->req.seq > s->resp.seq && only_sending_shut(ops)) {
		s->close_flags |= IMDS_CLOSE_HALF_CLOSED;
		return false;
	}
	return true;
}

/* The callbacks that imds_sockops (below) let through: a connection to a
 * watched port and maybe address, a marked socket or not. */
static __always_inline int track_sockops(struct bpf_sock_ops *ops, bool cas)
{
	__u64 cookie = bpf_get_socket_cookie(ops);
	struct imds_sock *s = sock_find(cookie);

	if (!s)
		return 1;
	switch (ops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		bpf_sock_ops_cb_flags_set(ops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RETRANS_CB_FLAG |
						       BPF_SOCK_OPS_RTO_CB_FLAG);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* no record: the first request (seq 0) or the close tells */
		s->close_flags |= IMDS_CLOSE_ESTABLISHED;
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		s->retransmits++;
		emit_retransmit(s);
		break;
	case BPF_SOCK_OPS_RTO_CB:
		s->rtos++;
		break;
	case BPF_SOCK_OPS_STATE_CB: {
		__u32 old_state = ops->args[0], new_state = ops->args[1];

		if (!exchange_over(s, ops, old_state, new_state))
			break;
		/* the server's FIN: first (CLOSE_WAIT), or after the client's half-close */
		emit_close(s, cookie, old_state,
			   new_state == TCP_CLOSE_WAIT || new_state == TCP_TIME_WAIT || new_state == TCP_CLOSING
				   ? IMDS_CLOSE_PEER_FIN
				   : 0,
			   cas);
		/* the rest of the teardown (FIN_WAIT2, TIME_WAIT, ...) is of no
		 * interest: no more callbacks for this socket */
		bpf_sock_ops_cb_flags_set(ops, 0);
		break;
	}
	}
	return 1;
}

/* As the connect work, in two builds: its close swaps the slot's word too. */
SEC("sockops")
int imds_sockops_work(struct bpf_sock_ops *ops)
{
	return track_sockops(ops, true);
}

SEC("sockops")
int imds_sockops_work_store(struct bpf_sock_ops *ops)
{
	return track_sockops(ops, false);
}

/* ---- payload (cgroup_skb) ---- */

/* The peer of the skb's socket is a watched address (on some watched port).
 * volatile: each ctx field is its own load (clang would otherwise fold their
 * offsets into one computed ctx pointer, which the verifier refuses). */
static __always_inline bool skb_addr_listed(struct __sk_buff *skb)
{
	__u32 family = *(volatile __u32 *)&skb->family;
	__u32 a[4];

	if (family == AF_INET)
		return v4_listed(*(volatile __u32 *)&skb->remote_ip4);
	if (family != AF_INET6)
		return false;
	a[0] = *(volatile __u32 *)&skb->remote_ip6[0];
	a[1] = *(volatile __u32 *)&skb->remote_ip6[1];
	a[2] = *(volatile __u32 *)&skb->remote_ip6[2];
	a[3] = *(volatile __u32 *)&skb->remote_ip6[3];
	if (v4_mapped(a)) /* a dual-stack socket */
		return v4_listed(a[3]);
	return v6_listed(a);
}

#define IMDS_STR2(x) #x
#define IMDS_STR(x) IMDS_STR2(x)

/* A 64-bit immediate the loader writes over (src/packet_filter.cpp,
 * WriteImm64) before load; asm, so clang keeps the ld_imm64 as it is. */
#define IMDS_IMM64(placeholder)                                              \
	({                                                                   \
		__u64 imm;                                                   \
		asm volatile("%0 = " IMDS_STR(placeholder) " ll" : "=r"(imm)); \
		imm;                                                         \
	})

/* The watched addresses' bits (imds_addr_bit) as an immediate: the loader
 * writes them over this placeholder in the attached programs' code before
 * load (src/packet_filter.cpp). So other traffic to a watched port reads no
 * map memory: a .rodata load cost 5-10 % of such a run. */
static __always_inline __u64 watched_addr_bits(void)
{
	return IMDS_IMM64(IMDS_ADDR_BITS_PLACEHOLDER);
}

/* Is the bit of this folded address (imds_addr_bit) a watched one's? */
static __always_inline bool addr_bit_set(__u32 folded)
{
	return (watched_addr_bits() >> imds_addr_bit(folded)) & 1;
}

/* The first test of a peer on a watched port: its address's bit, no loop
 * and no memory read; skb_addr_listed decides for the few that pass. */
static __always_inline bool skb_addr_maybe(struct __sk_buff *skb)
{
	__u32 family = *(volatile __u32 *)&skb->family;
	__u32 folded;

	if (family == AF_INET)
		folded = *(volatile __u32 *)&skb->remote_ip4;
	else if (family == AF_INET6)
		folded = *(volatile __u32 *)&skb->remote_ip6[0] ^ *(volatile __u32 *)&skb->remote_ip6[1] ^
			 *(volatile __u32 *)&skb->remote_ip6[2] ^ *(volatile __u32 *)&skb->remote_ip6[3];
	else
		return false;
	return addr_bit_set(folded);
}

struct tcp_seg {
	__u32 off; /* payload offset from the network header */
	__u32 len; /* payload bytes */
	__u32 seq;
	__u8 flags; /* TCP flags byte */
};

struct tcp_head {
	__be16 source, dest;
	__be32 seq, ack_seq;
	__u8 doff_res, flags;
};

/* The TCP header where it nearly always is, in the linear part (TCP built
 * it there, or pulled it before the socket filter): read in place, no
 * helper call. NULL if it is not; *ip_len is the IP header's length. */
static __always_inline struct tcp_head *linear_tcp_head(struct __sk_buff *skb, bool v4, __u32 *ip_len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct tcp_head *th;

	*ip_len = 40;
	if (v4) {
		if (data + 1 > data_end)
			return NULL;
		*ip_len = (*(__u8 *)data & 0x0f) * 4;
	}
	th = data + *ip_len;
	if ((void *)(th + 1) > data_end)
		return NULL;
	return th;
}

static __always_inline int locate_payload(struct __sk_buff *skb, __u8 family, struct tcp_seg *seg)
{
	struct tcp_head *th, copy;
	__u32 ip_len;
	__u8 b;

	th = linear_tcp_head(skb, family == AF_INET, &ip_len);
	if (!th)
		goto load;
	seg->seq = bpf_ntohl(th->seq);
	seg->flags = th->flags;
	b = th->doff_res;
	goto found;
load:
	if (family == AF_INET) {
		if (bpf_skb_load_bytes(skb, 0, &b, 1))
			return -1;
		ip_len = (b & 0x0f) * 4;
	}
	if (bpf_skb_load_bytes(skb, ip_len, &copy, sizeof(copy)))
		return -1;
	seg->seq = bpf_ntohl(copy.seq);
	seg->flags = copy.flags;
	b = copy.doff_res;
found:
	seg->off = ip_len + (b >> 4) * 4;
	seg->len = skb->len > seg->off ? skb->len - seg->off : 0;
	return 0;
}

/* Drops bytes already parsed (retransmits, duplicates); notes gaps. */
static __always_inline void trim_seen(struct imds_sock *s, struct tcp_seg *seg, int dir)
{
	__u32 *next = dir ? &s->rx_next_seq : &s->tx_next_seq;
	__u8 bit = dir ? 2 : 1;
	__u32 end = seg->seq + seg->len;

	if (s->seq_valid & bit) {
		__s32 behind = (__s32)(*next - seg->seq);

		if (behind >= (__s32)seg->len) {
			seg->len = 0;
			return;
		}
		if (behind > 0) {
			seg->off += behind;
			seg->len -= behind;
		} else if (behind < 0) {
			send_parse_error(s, IMDS_PERR_SEQ_GAP, dir, bpf_ktime_get_ns());
		}
	}
	*next = end;
	s->seq_valid |= bit;
}

/* The payload may hold a token or a key: what was loaded must not outlive
 * the parse. Eight-byte stores over the lines the parse has just read (hot),
 * a rolled loop (verified once per state that reaches it): copying zeros from
 * a map read as many cold lines again. */
static __always_inline void scrub(struct scratch *sc)
{
	__u32 words = (sc->loaded + 7) / 8;

#pragma clang loop unroll(disable)
	for (__u32 k = 0; k < IMDS_FAST_BUF / 8; k++) {
		if (k >= words)
			break;
		*(volatile __u64 *)&sc->buf[k * 8] = 0;
	}
}

/* Goes on with the segment's next window in the direction's program. */
static __always_inline void tail_call_next(struct __sk_buff *skb, int dir)
{
	if (dir)
		bpf_tail_call(skb, &next_ingress_window, IMDS_STEP_NEXT);
	else
		bpf_tail_call(skb, &next_egress_window, IMDS_STEP_NEXT);
	count_drop(IMDS_DROP_TAIL_CALL); /* only reached when the call failed */
}

/* A segment's first step: a head that starts here, parsed whole; what is
 * left (a declined head, a body's credentials tail, pipelined requests)
 * goes to the windows. */
static __always_inline void first_step(struct __sk_buff *skb, struct imds_sock *s, struct scratch *sc, int dir)
{
	struct seg_ctx c = {.skb = skb, .s = s, .now = sc->now};
	__u32 off;

	off = imds_fast_step(&c, dir, &s->req, &s->resp, sc->buf, sc->off, sc->end, c.now, &sc->loaded);
	scrub(sc);
	if (off >= sc->end)
		return;
	sc->off = off;
	tail_call_next(skb, dir);
}

/* Parses one window of the segment, then chains the next through a tail
 * call, so each program's verified loop stays one window long. */
static __always_inline void parse_step(struct __sk_buff *skb, struct imds_sock *s, struct scratch *sc, int dir)
{
	struct seg_ctx c = {.skb = skb, .s = s, .now = sc->now};
	__u32 off, end = sc->end;

	off = imds_parse_window(&c, dir, &s->req, &s->resp, sc->buf, sc->off, end, c.now, &sc->loaded);
	scrub(sc);
	if (off >= end)
		return;
	sc->off = off;
	if (++sc->windows < IMDS_SCAN_WINDOWS) {
		tail_call_next(skb, dir);
		return;
	}
	__u8 phase = dir ? s->resp.phase : s->req.phase;

	if (phase != IMDS_PH_BODY && phase != IMDS_PH_ERROR) {
		if (dir)
			imds_resp_fail(&c, &s->resp, IMDS_PERR_HEADER_TOO_LONG);
		else
			imds_req_fail(&c, &s->req, IMDS_PERR_HEADER_TOO_LONG);
	}
}

static __always_inline struct scratch *scratch_area(__u32 dir)
{
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &dir);

	if (!sc)
		count_drop(IMDS_DROP_SCRATCH);
	return sc;
}

__noinline int imds_ingress_first_step(struct __sk_buff *skb, __u32 slot, __u64 cookie);

/* A segment to or from a metadata peer. A pure ACK (most of them) leaves
 * before the socket is looked up; an ingress RST still counts. The IP
 * version is the packet's: a dual-stack socket sends IPv4. */
static __always_inline void parse_segment(struct __sk_buff *skb, int dir)
{
	__u8 family = skb->protocol == bpf_htons(ETH_P_IP) ? AF_INET : AF_INET6;
	struct imds_sock *s;
	struct tcp_seg seg;
	struct scratch *sc;
	__u32 slot = 0;
	__u64 cookie;

	if (locate_payload(skb, family, &seg)) {
		count_drop(IMDS_DROP_LOAD_BYTES);
		return;
	}
	if (seg.len == 0 && !(dir && (seg.flags & 0x04)))
		return;
	cookie = bpf_get_socket_cookie(skb);
	s = sock_find_slot(cookie, &slot);
	if (!s)
		return;
	if (dir && (seg.flags & 0x04))
		s->close_flags |= IMDS_CLOSE_RST_RECEIVED;
	if (seg.len == 0)
		return;
	trim_seen(s, &seg, dir);
	if (seg.len == 0)
		return;
	struct seg_ctx c = {.skb = skb, .s = s, .now = bpf_ktime_get_ns()};
	__u32 end = seg.off + seg.len, off;

	/* body bytes that need no look are skipped here, without a tail call */
	off = imds_skip(&c, dir, &s->req, &s->resp, seg.off, end, c.now);
	if (off >= end)
		return;
	sc = scratch_area(dir);
	if (!sc)
		return;
	sc->windows = 0;
	sc->now = c.now;
	sc->off = off;
	sc->end = end;
	/* a head starting here, or a credentials body's tail ending here, goes
	 * to the fast path; anything else to windows */
	__u8 phase = dir ? s->resp.phase : s->req.phase;
	bool fast = phase == IMDS_PH_START || (dir && imds_fast_tail(&s->resp, end - off));

	if (fast && !dir)
		first_step(skb, s, sc, dir);
	else if (fast)
		imds_ingress_first_step(skb, slot, cookie);
	else
		tail_call_next(skb, dir);
}

/* A segment's next window (a tail call: the socket is looked up again). */
static __always_inline void continue_segment(struct __sk_buff *skb, int dir)
{
	struct imds_sock *s = sock_find(bpf_get_socket_cookie(skb));
	struct scratch *sc;

	if (!s)
		return;
	sc = scratch_area(dir);
	if (!sc)
		return;
	parse_step(skb, s, sc, dir);
}

/* An ingress segment's first step, a global function: the verifier checks
 * it once, on its own, with an unknown skb (inline, beside the main path's
 * states, imds_ingress exceeds the 1M-instruction budget). A call, where it
 * was a tail call to a program of its own: ingress -4 % a request. The
 * caller's slot comes as a scalar (a global function takes no map value):
 * an array lookup, where the cookie helper and the ways were a second
 * lookup. The segment's cookie still decides: a connect on another CPU
 * may have taken the slot since. */
__noinline int imds_ingress_first_step(struct __sk_buff *skb, __u32 slot, __u64 cookie)
{
	struct imds_sock *s = bpf_map_lookup_elem(&imds_socks, &slot);
	struct scratch *sc;

	if (!s || (s->sock_id & ~IMDS_SOCK_CLOSED) != cookie)
		return 0;
	sc = scratch_area(1);
	if (sc)
		first_step(skb, s, sc, 1);
	return 0;
}

/* A segment on a watched port from a maybe-watched address (the filters,
 * imds_egress/imds_ingress below, let it through): the exact test, then
 * the parse. */
SEC("cgroup_skb/egress")
int imds_egress_work(struct __sk_buff *skb)
{
	if (skb_addr_listed(skb))
		parse_segment(skb, 0);
	return 1;
}

SEC("cgroup_skb/ingress")
int imds_ingress_work(struct __sk_buff *skb)
{
	if (skb_addr_listed(skb))
		parse_segment(skb, 1);
	return 1;
}

/* Tail-call targets, never attached: the next windows of a segment. */
#define SEGMENT_STEP(name, hook, dir)                 \
	SEC(hook)                                     \
	int name(struct __sk_buff *skb)               \
	{                                             \
		continue_segment(skb, (dir));         \
		return 1;                             \
	}

SEGMENT_STEP(imds_egress_more, "cgroup_skb/egress", 0)
SEGMENT_STEP(imds_ingress_more, "cgroup_skb/ingress", 1)

/* ---- the hop-limit proof: replies dying in this node's forwarding path ---- */

#define IPPROTO_TCP 6

/* The drop reasons involved, under flavoured names: CO-RE resolves them
 * against the running kernel's enum skb_drop_reason (5.17+), whatever the
 * build machine's vmlinux.h holds. The values here are placeholders. */
enum skb_drop_reason___imds {
	SKB_DROP_REASON_NOT_SPECIFIED___imds = 1,
	SKB_DROP_REASON_IP_INHDR___imds = 2,
	SKB_DROP_REASON_PKT_TOO_BIG___imds = 3,
	SKB_DROP_REASON_IP_TTL_EXCEEDED___imds = 4,
};

/* The tracepoint's record: has a reason where the tracepoint passes one. */
struct trace_event_raw_kfree_skb___imds {
	enum skb_drop_reason___imds reason;
} __attribute__((preserve_access_index));

/* Could this drop be an exhausted TTL in ip_forward / ip6_forward? */
static __always_inline bool ttl_drop_reason(__u32 reason)
{
	if (bpf_core_enum_value_exists(enum skb_drop_reason___imds, SKB_DROP_REASON_IP_TTL_EXCEEDED___imds) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason___imds, SKB_DROP_REASON_IP_TTL_EXCEEDED___imds))
		return true;
	/* 5.19 gave the forwarding paths their reasons (PKT_TOO_BIG came with
	 * them): an exhausted TTL is IP_INHDR there. 5.17 and 5.18 free it
	 * without one. */
	if (bpf_core_enum_value_exists(enum skb_drop_reason___imds, SKB_DROP_REASON_PKT_TOO_BIG___imds))
		return reason == bpf_core_enum_value(enum skb_drop_reason___imds, SKB_DROP_REASON_IP_INHDR___imds);
	return reason == bpf_core_enum_value(enum skb_drop_reason___imds, SKB_DROP_REASON_NOT_SPECIFIED___imds);
}

/* ip_forward frees a packet whose TTL would reach 0 through kfree_skb (the
 * drop path; consume_skb is the normal one). Only a TCP segment from a
 * watched endpoint's address and port with TTL <= 1 is reported. */
static __always_inline int ttl_drop(__u16 proto, unsigned char *head, __u16 nh)
{
	__u32 saddr[4] = {}, daddr[4] = {};
	__u16 sport, dport;
	__u8 family, ttl, l4;
	__u32 l4_off;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return 0;
		family = AF_INET;
		ttl = ip.ttl;
		l4 = ip.protocol;
		saddr[0] = ip.saddr;
		daddr[0] = ip.daddr;
		l4_off = nh + ip.ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return 0;
		family = AF_INET6;
		ttl = ip6.hop_limit;
		l4 = ip6.nexthdr;
		__builtin_memcpy(saddr, &ip6.saddr, sizeof(saddr));
		__builtin_memcpy(daddr, &ip6.daddr, sizeof(daddr));
		l4_off = nh + sizeof(ip6);
	} else {
		return 0;
	}
	if (ttl > 1 || l4 != IPPROTO_TCP)
		return 0;
	if (bpf_probe_read_kernel(&sport, sizeof(sport), head + l4_off) ||
	    bpf_probe_read_kernel(&dport, sizeof(dport), head + l4_off + 2))
		return 0;
	if (!endpoint_match(family, saddr, sport))
		return 0;

	struct imds_ttl_drop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop(IMDS_DROP_RINGBUF_FULL);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->hdr.type = IMDS_EV_TTL_DROP;
	e->hdr.family = family;
	e->hdr.dport = bpf_ntohs(dport);
	e->hdr.ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(e->daddr, daddr, sizeof(daddr));
	submit(e);
	return 0;
}

/* BTF-typed, behind the filter imds_kfree_skb (the reason argument, 5.17+):
 * the skb's fields are plain loads. */
SEC("tp_btf/kfree_skb")
int imds_kfree_skb_work(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];

	if (!skb)
		return 0;
	return ttl_drop(skb->protocol, skb->head, skb->network_header);
}

/* Kernels before 5.17 (no reason argument), behind the filter imds_kfree_raw
 * (where the drop was called from), through kfree_raw_work. */
SEC("raw_tp/kfree_skb")
int imds_kfree_raw_work(struct bpf_raw_tracepoint_args *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->args[0];

	if (!skb)
		return 0;
	return ttl_drop(BPF_CORE_READ(skb, protocol), BPF_CORE_READ(skb, head), BPF_CORE_READ(skb, network_header));
}

/* ---- start-up ---- */

/* Never attached: the loader runs it (BPF_PROG_TEST_RUN) before attaching
 * the hooks, to write every page of the ring once. A guest's fresh kernel
 * pages may be backed by the host only at their first write: here the
 * first pass over a new ring cost ~1 us more per metadata request, and a
 * connection slot's first use ~10 us (bench/README.md, 2026-12-03). Each
 * record fills one page exactly (header + IMDS_PREFAULT_CHUNK), and its
 * reservation writes the header at the page's start; it is discarded, so
 * the reader skips it. Stops when the ring is full: the loader consumes
 * and runs it again until the whole ring was written. */
SEC("cgroup_skb/egress")
int imds_prefault_ring(struct __sk_buff *skb)
{
	for (__u32 i = 0; i < IMDS_PREFAULT_PAGES_PER_RUN; i++) {
		void *page = bpf_ringbuf_reserve(&events, IMDS_PREFAULT_CHUNK, 0);

		if (!page)
			break;
		bpf_ringbuf_discard(page, BPF_RB_NO_WAKEUP);
	}
	return 1;
}

/* ---- the attached programs: filters in front of the work ---- */

/* Everything the node does runs these, so they are only the tests that
 * turn other traffic away and a tail call (a patched direct jump) into the
 * work for the rest. No subprogram: the loader JITs the ones it attaches
 * first and together (src/probes.cpp), so their code shares a page. A page
 * of code not yet touched since the kernel was entered costs a TLB walk,
 * ~20 ns a run on this guest: it was 1.4-1.8x of an empty program on ingress
 * and sockops, whose code sat on pages of their own (bench/README.md,
 * 2026-12-03, afternoon). No map memory either: the port and the
 * address's bit are immediates where every endpoint is on port 80. */
static __always_inline int to_work(void *ctx, void *work)
{
	bpf_tail_call(ctx, work, 0);
	count_drop_inline(IMDS_DROP_TAIL_CALL); /* only reached when the call failed */
	return 1;
}

static __always_inline __u32 fold_ip6(const __u32 *a)
{
	return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* Every endpoint on port 80: a connect elsewhere returns after one load and
 * a compare with an immediate; on port 80, the address's bit decides. */
SEC("cgroup/connect4")
int imds_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_port != PORT80_BE || ctx->type != SOCK_STREAM || !addr_bit_set(ctx->user_ip4))
		return 1;
	return to_work(ctx, &connect4_work);
}

SEC("cgroup/connect6")
int imds_connect6(struct bpf_sock_addr *ctx)
{
	__u32 addr[4];

	if (ctx->user_port != PORT80_BE || ctx->type != SOCK_STREAM)
		return 1;
	load_ip6(ctx, addr);
	if (!addr_bit_set(fold_ip6(addr))) /* a v4-mapped address's fold is listed too */
		return 1;
	return to_work(ctx, &connect6_work);
}

/* Any ports: the port against the distinct watched ports first. */
SEC("cgroup/connect4")
int imds_connect4_any(struct bpf_sock_addr *ctx)
{
	if (!port_listed(ctx->user_port) || ctx->type != SOCK_STREAM || !addr_bit_set(ctx->user_ip4))
		return 1;
	return to_work(ctx, &connect4_work);
}

SEC("cgroup/connect6")
int imds_connect6_any(struct bpf_sock_addr *ctx)
{
	__u32 addr[4];

	if (!port_listed(ctx->user_port) || ctx->type != SOCK_STREAM)
		return 1;
	load_ip6(ctx, addr);
	if (!addr_bit_set(fold_ip6(addr)))
		return 1;
	return to_work(ctx, &connect6_work);
}

/* An active open's callbacks fire for every connection of the node: all
 * but five return at the op; of the state changes only the end of the
 * exchange needs the socket (ACTIVE_ESTABLISHED_CB reports the other one,
 * SYN_SENT -> ESTABLISHED). */
static __always_inline bool sockops_op_wanted(const struct bpf_sock_ops *ops, __u32 op)
{
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_STATE_CB && op != BPF_SOCK_OPS_RETRANS_CB && op != BPF_SOCK_OPS_RTO_CB)
		return false;
	return op != BPF_SOCK_OPS_STATE_CB || ends_exchange(ops->args[0], ops->args[1]);
}

static __always_inline int sockops_addr_then_work(struct bpf_sock_ops *ops)
{
	__u32 folded;

	if (ops->family == AF_INET)
		folded = ops->remote_ip4;
	else
		folded = ops->remote_ip6[0] ^ ops->remote_ip6[1] ^ ops->remote_ip6[2] ^ ops->remote_ip6[3];
	if (!addr_bit_set(folded))
		return 1;
	return to_work(ops, &sockops_work);
}

/* Every endpoint on port 80: the port against an immediate, as below. */
SEC("sockops")
int imds_sockops(struct bpf_sock_ops *ops)
{
	if (!sockops_op_wanted(ops, ops->op) || ops->remote_port != SKB_PORT(PORT80_BE))
		return 1;
	return sockops_addr_then_work(ops);
}

SEC("sockops")
int imds_sockops_any(struct bpf_sock_ops *ops)
{
	if (!sockops_op_wanted(ops, ops->op) || !port_listed(SKB_PORT_BE16(ops->remote_port)))
		return 1;
	return sockops_addr_then_work(ops);
}

/* Does a segment from or to a maybe-watched peer need the work: payload,
 * or an inbound RST? Most of a metadata connection's segments are bare
 * ACKs, which would take the tail call and the exact address test only to
 * be turned away (the work's parse_segment tests the same). Headers out of
 * the linear part: yes, the work reads them. */
static __always_inline bool skb_needs_work(struct __sk_buff *skb, bool in)
{
	__u32 ip_len;
	struct tcp_head *th = linear_tcp_head(skb, skb->protocol == bpf_htons(ETH_P_IP), &ip_len);

	if (!th)
		return true;
	if (in && (th->flags & 0x04))
		return true;
	return skb->len > ip_len + (th->doff_res >> 4) * 4;
}

/* Every endpoint on port 80: one compare with an immediate for other
 * traffic; most other hosts' port 80 stops at the address bit. */
SEC("cgroup_skb/egress")
int imds_egress(struct __sk_buff *skb)
{
	if (skb->remote_port != SKB_PORT(PORT80_BE) || !skb_addr_maybe(skb) || !skb_needs_work(skb, false))
		return 1;
	return to_work(skb, &egress_work);
}

SEC("cgroup_skb/ingress")
int imds_ingress(struct __sk_buff *skb)
{
	if (skb->remote_port != SKB_PORT(PORT80_BE) || !skb_addr_maybe(skb) || !skb_needs_work(skb, true))
		return 1;
	return to_work(skb, &ingress_work);
}

/* The same where some endpoint is on another port. */
SEC("cgroup_skb/egress")
int imds_egress_any(struct __sk_buff *skb)
{
	if (!port_listed(SKB_PORT_BE16(skb->remote_port)) || !skb_addr_maybe(skb) || !skb_needs_work(skb, false))
		return 1;
	return to_work(skb, &egress_work);
}

SEC("cgroup_skb/ingress")
int imds_ingress_any(struct __sk_buff *skb)
{
	if (!port_listed(SKB_PORT_BE16(skb->remote_port)) || !skb_addr_maybe(skb) || !skb_needs_work(skb, true))
		return 1;
	return to_work(skb, &ingress_work);
}

/* Every dropped packet of the node: the reason argument (5.17+) stops all
 * but the forwarding paths' drops at one load and a compare. The loader
 * picks this one where the kernel's tracepoint has the reason. */
SEC("tp_btf/kfree_skb")
int imds_kfree_skb(__u64 *ctx)
{
	/* a constant after relocation: without the argument, ctx[2] is never
	 * read (and the verifier never sees the read) */
	if (bpf_core_field_exists(struct trace_event_raw_kfree_skb___imds, reason) && !ttl_drop_reason(ctx[2]))
		return 0;
	to_work(ctx, &kfree_work);
	return 0;
}

/* Is this code address inside one of the forwarding paths' ranges
 * (immediates the loader wrote: IMDS_FWD*_PLACEHOLDER)? Ranges 2 and 3
 * hold split-off parts, which most kernels lack: an empty range 2 ends the
 * test after two ranges. */
static __always_inline bool in_forwarding_code(__u64 addr)
{
	__u64 size2;

	if (addr - IMDS_IMM64(IMDS_FWD0_START_PLACEHOLDER) < IMDS_IMM64(IMDS_FWD0_SIZE_PLACEHOLDER) ||
	    addr - IMDS_IMM64(IMDS_FWD1_START_PLACEHOLDER) < IMDS_IMM64(IMDS_FWD1_SIZE_PLACEHOLDER))
		return true;
	size2 = IMDS_IMM64(IMDS_FWD2_SIZE_PLACEHOLDER);
	if (!size2)
		return false;
	return addr - IMDS_IMM64(IMDS_FWD2_START_PLACEHOLDER) < size2 ||
	       addr - IMDS_IMM64(IMDS_FWD3_START_PLACEHOLDER) < IMDS_IMM64(IMDS_FWD3_SIZE_PLACEHOLDER);
}

/* Before 5.17 there is no reason to test, but the tracepoint passes where
 * kfree_skb was called from: ip_forward and ip6_forward free an exhausted
 * TTL's packet themselves. Any other caller's drop stops at a few compares
 * with immediates; reading the headers cost 3.6x an empty program here.
 * Returns 1 when it turned the drop away, 2 when the tail call failed: the
 * tracepoint ignores the value, a test run tells the exits apart from the
 * work's 0 (tests/integration/kfree_filter_test.cpp). */
SEC("raw_tp/kfree_skb")
int imds_kfree_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if (!in_forwarding_code(ctx->args[1]))
		return 1;
	to_work(ctx, &kfree_raw_work);
	return 2;
}
