/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What floor.bpf.c counts, shared with bench_ctl, which reads it back. */
#ifndef IMDSWATCH_BENCH_FLOOR_H
#define IMDSWATCH_BENCH_FLOOR_H

#include <linux/types.h>

struct floor_key {
	__u64 cgroup_id;
	__u16 status; /* HTTP status of a call; 0: a connection's end */
	__u8 kind;    /* call kind (0 token, 1 credentials, 2 other), or the TCP state a connection left */
	__u8 log2_us; /* a call's latency bucket */
	__u32 pad;
};

#endif
