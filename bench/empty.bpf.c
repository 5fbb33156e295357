// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The floor every imdswatch program is measured against: one EMPTY program
 * per type and hook the agent uses, attached the same way (BPF links at the
 * cgroup v2 root; raw_tp/kfree_skb globally). Each does nothing but return
 * the verdict that lets traffic through, so its run time is the hook's own
 * cost (context setup, the indirect call, bpf_stats' clock reads). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup/connect4")
int empty_connect4(struct bpf_sock_addr *ctx) { return 1; }

SEC("cgroup/connect6")
int empty_connect6(struct bpf_sock_addr *ctx) { return 1; }

SEC("sockops")
int empty_sockops(struct bpf_sock_ops *ops) { return 1; }

SEC("cgroup_skb/egress")
int empty_egress(struct __sk_buff *skb) { return 1; }

SEC("cgroup_skb/ingress")
int empty_ingress(struct __sk_buff *skb) { return 1; }

SEC("raw_tp/kfree_skb")
int empty_kfree_skb(void *ctx) { return 0; }
