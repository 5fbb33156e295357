// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The counting floor: the least work any design must do on this machine's
 * hooks to give imdswatch's headline figures (calls per cgroup and kind,
 * their status and latency, connection outcomes), measured beside the agent
 * in part 3. Not a product: it follows no split head, finds no response end
 * or credential expiry, names no process, sends no record and watches one v4
 * endpoint. The only state is a request on its way, by socket cookie; counts
 * go to a hash map in the kernel, as ebpf_exporter keeps them. If this floor
 * costs more than a target, no design here meets it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "floor.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* the endpoint (network byte order), set by bench_ctl before load */
const volatile __u32 floor_ip4 = 0;
const volatile __u16 floor_port = 0;

#define AF_INET 2

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SKB_PORT(be16) ((__u32)(be16) << 16)
#else
#define SKB_PORT(be16) ((__u32)(be16))
#endif

/* A request on its way: kept from its first segment to its response's. */
struct floor_request {
	__u64 start_ns;
	__u32 kind;
	__u32 pad;
};

/* By socket cookie; preallocated, so a request allocates nothing. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct floor_request);
} floor_requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct floor_key);
	__type(value, __u64);
} floor_counts SEC(".maps");

static __always_inline void count(struct floor_key *key)
{
	__u64 one = 1, *n = bpf_map_lookup_elem(&floor_counts, key);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&floor_counts, key, &one, BPF_NOEXIST);
}

static __always_inline __u8 log2_u64(__u64 v)
{
	__u8 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

/* No connect program: the socket's cgroup is the skb's (bpf_skb_cgroup_id).
 * sockops: at a connect, ask for state changes; at the close, count the
 * connection by the state it left (SYN_SENT: refused or timed out). */
SEC("sockops")
int floor_sockops(struct bpf_sock_ops *ops)
{
	__u32 op = ops->op;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	if (op == BPF_SOCK_OPS_STATE_CB && ops->args[1] != BPF_TCP_CLOSE)
		return 1;
	if (ops->remote_port != SKB_PORT(floor_port) || ops->remote_ip4 != floor_ip4)
		return 1;
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		bpf_sock_ops_cb_flags_set(ops, BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	struct floor_key key = {.kind = (__u8)ops->args[0]};

	count(&key);
	return 1;
}

/* The payload's offset, or 0 for a segment without payload (v4 only): the
 * headers read in place, as the agent's filter reads them. */
static __always_inline __u32 payload_off(struct __sk_buff *skb)
{
	__u8 *ip = (__u8 *)(long)skb->data, *end = (__u8 *)(long)skb->data_end, *tcp;
	__u32 ip_len, off;

	if (ip + 20 > end)
		return 0;
	ip_len = (ip[0] & 0xf) * 4;
	tcp = ip + ip_len;
	if (tcp + 13 > end)
		return 0;
	off = ip_len + (tcp[12] >> 4) * 4;
	return skb->len > off ? off : 0;
}

static __always_inline int watched(struct __sk_buff *skb)
{
	return skb->remote_port == SKB_PORT(floor_port) && skb->family == AF_INET && skb->remote_ip4 == floor_ip4;
}

/* a request's first segment: its kind from the method and the path's start */
static const char creds_prefix[40] = "GET /latest/meta-data/iam/security-crede";

SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb)
{
	struct floor_request req = {.kind = 1};
	__u64 head[5] = {}, cookie;
	__u32 off;

	if (!watched(skb) || !(off = payload_off(skb)))
		return 1;
	cookie = bpf_get_socket_cookie(skb);
	if (bpf_map_lookup_elem(&floor_requests, &cookie))
		return 1; /* a later segment of a request on its way */
	bpf_skb_load_bytes(skb, off, head, sizeof(head));
	for (int i = 0; i < 5; i++)
		if (head[i] != ((const __u64 *)creds_prefix)[i])
			req.kind = 2;
	if ((char)head[0] == 'P')
		req.kind = 0;
	req.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&floor_requests, &cookie, &req, BPF_ANY);
	return 1;
}

/* a response's first segment: its status, and the call counted */
SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb)
{
	char line[12]; /* HTTP/1.1 200 */
	struct floor_request *req;
	__u64 cookie;
	__u32 off;

	if (!watched(skb) || !(off = payload_off(skb)))
		return 1;
	cookie = bpf_get_socket_cookie(skb);
	req = bpf_map_lookup_elem(&floor_requests, &cookie);
	if (!req || bpf_skb_load_bytes(skb, off, line, sizeof(line)))
		return 1;
	struct floor_key key = {
		.cgroup_id = bpf_skb_cgroup_id(skb),
		.status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'),
		.kind = (__u8)req->kind,
		.log2_us = log2_u64((bpf_ktime_get_ns() - req->start_ns) / 1000),
	};
	bpf_map_delete_elem(&floor_requests, &cookie);
	count(&key);
	return 1;
}
