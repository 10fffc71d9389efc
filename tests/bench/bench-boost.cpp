// SPDX-License-Identifier: MIT
/*
 * bench-boost.cpp - Boost.Interprocess, the shared-memory peer (C++ only
 * here; the rest of shmpool is C).
 *
 * One managed_shared_memory segment (256 MiB, a POSIX shm object, removed
 * at exit), and four ways to allocate in it:
 *   boost-managed  segment.allocate(size) / deallocate(p): the segment
 *                  manager's best-fit allocator under its process-shared mutex
 *   boost-node     node_allocator<T>: a node pool shared by every process
 *                  (looked up by name in the segment), under a mutex
 *   boost-private  private_node_allocator<T>: a node pool private to the
 *                  allocator object (no locking on the fast path)
 *   boost-cached   cached_node_allocator<T>: the shared node pool with a
 *                  private cache of up to 64 nodes in front
 * Node allocators are measured with allocate_one/deallocate_one: their
 * allocate(1) goes to the segment manager, bypassing the node pool.
 *
 * Part: pair, 64 B, 256 B and 4 KiB, batch 1 and 256 (part 1).
 */
#include <boost/interprocess/allocators/cached_node_allocator.hpp>
#include <boost/interprocess/allocators/node_allocator.hpp>
#include <boost/interprocess/allocators/private_node_allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "bench-util.h"

namespace bi = boost::interprocess;
using segment_manager = bi::managed_shared_memory::segment_manager;

template <std::size_t N> struct object {
	char bytes[N];
};

static struct bench_opts opts;

/* ---- the managed segment ------------------------------------------------ */

static inline void *managed_alloc(bi::managed_shared_memory *m, std::size_t size)
{
	return m->allocate(size, std::nothrow);
}

static inline void managed_free(bi::managed_shared_memory *m, void *p, std::size_t)
{
	m->deallocate(p);
}

BENCH_PAIRS_DEFINE(managed_pairs, bi::managed_shared_memory *, managed_alloc, managed_free)

/* ---- node allocators: allocate_one / deallocate_one ----------------------- */

template <class A> static inline void *node_alloc(A *a, std::size_t)
{
	return bi::ipcdetail::to_raw_pointer(a->allocate_one());
}

template <class A> static inline void node_free(A *a, void *p, std::size_t)
{
	a->deallocate_one(typename A::pointer(static_cast<typename A::value_type *>(p)));
}

#define NODE_KIND(kind, N)                                                            \
	using kind##_##N = bi::kind<object<N>, segment_manager>;                      \
	BENCH_PAIRS_DEFINE(kind##_##N##_pairs, kind##_##N *, node_alloc, node_free)

NODE_KIND(node_allocator, 64)
NODE_KIND(node_allocator, 256)
NODE_KIND(node_allocator, 4096)
NODE_KIND(private_node_allocator, 64)
NODE_KIND(private_node_allocator, 256)
NODE_KIND(private_node_allocator, 4096)
NODE_KIND(cached_node_allocator, 64)
NODE_KIND(cached_node_allocator, 256)
NODE_KIND(cached_node_allocator, 4096)

/* Run one node allocator kind at one size; returns ns/pair. */
#define RUN_NODE(kind, N, batch, n)                                                   \
	([&]() {                                                                      \
		kind##_##N a(seg.get_segment_manager());                              \
		return kind##_##N##_pairs(&a, N, batch, n);                            \
	}())

static double run_node(bi::managed_shared_memory &seg, const std::string &kind, std::size_t size,
		       unsigned batch, uint64_t n)
{
#define SIZES(kind)                                                                   \
	if (size == 64)                                                               \
		return RUN_NODE(kind, 64, batch, n);                                   \
	if (size == 256)                                                              \
		return RUN_NODE(kind, 256, batch, n);                                  \
	if (size == 4096)                                                             \
		return RUN_NODE(kind, 4096, batch, n);
	if (kind == "node")
		SIZES(node_allocator)
	else if (kind == "private")
		SIZES(private_node_allocator)
	else if (kind == "cached")
		SIZES(cached_node_allocator)
	bench_die("no Boost %s allocator of %zu bytes", kind.c_str(), size);
#undef SIZES
}

static void pair_case(bi::managed_shared_memory &seg, const char *kind, std::size_t size,
		      unsigned batch)
{
	double ns = !strcmp(kind, "managed") ? managed_pairs(&seg, size, batch, opts.iters)
					     : run_node(seg, kind, size, batch, opts.iters);

	bench_result("pair", (std::string("boost-") + kind).c_str(),
		     ", \"size\": %zu, \"batch\": %u, \"value\": %.2f, \"unit\": \"ns/pair\"", size,
		     batch, ns);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "managed", "node", "private", "cached" };
	std::string name = "shmpool-bench-boost-" + std::to_string(getpid());

	bench_parse(argc, argv, &opts);
	bench_idle_thread();
	bi::shared_memory_object::remove(name.c_str());
	try {
		bi::managed_shared_memory seg(bi::create_only, name.c_str(), 256u << 20);

		if (opts.one_alloc[0]) {
			std::string k = opts.one_alloc;

			if (k == "managed")
				managed_pairs(&seg, opts.one_size, opts.one_batch, opts.one_n);
			else
				run_node(seg, k, opts.one_size, opts.one_batch, opts.one_n);
		} else if (bench_part(&opts, "pair")) {
			for (unsigned s = 0; s < 3; s++)
				for (unsigned b = 0; b < 2; b++)
					for (const char *k : kinds)
						pair_case(seg, k, bench_sizes[s], bench_batches[b]);
		}
	} catch (const std::exception &e) {
		bi::shared_memory_object::remove(name.c_str());
		bench_die("Boost.Interprocess: %s", e.what());
	}
	bi::shared_memory_object::remove(name.c_str());
	return 0;
}
