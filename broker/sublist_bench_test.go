package broker

import (
	"fmt"
	"testing"
)

// benchSublist returns a router with n subscriptions, nearly all on
// distinct literal subjects bench.<i>.x that the benchmark subject does not
// match, plus one wildcard in every thousand (bench.*.y, bench.<i>.>).
func benchSublist(b *testing.B, n int) *sublist {
	s := newSublist()
	for i := range n {
		f := fmt.Sprintf("bench.%d.x", i)
		switch {
		case i%1000 == 500:
			f = "bench.*.y"
		case i%1000 == 999:
			f = fmt.Sprintf("bench.%d.>", i)
		}
		if err := s.Insert(newSub(f, "")); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// BenchmarkSublistMatch matches bench.0.x, which bench.0.x alone
// matches, against routers of growing size, through the cache and with
// the cache disabled (a full trie walk and a fresh Result every time).
func BenchmarkSublistMatch(b *testing.B) {
	subj := []byte("bench.0.x")
	for _, n := range []int{1, 1000, 100000} {
		s := benchSublist(b, n)
		b.Run(fmt.Sprintf("subs=%d/cached", n), func(b *testing.B) {
			s.cacheMax = cacheMax
			s.Match(subj)
			b.ReportAllocs()
			for b.Loop() {
				if r := s.Match(subj); len(r.Psubs) != 1 {
					b.Fatalf("matched %d", len(r.Psubs))
				}
			}
		})
		b.Run(fmt.Sprintf("subs=%d/uncached", n), func(b *testing.B) {
			s.cacheMax = 0
			clear(s.cache)
			b.ReportAllocs()
			for b.Loop() {
				if r := s.Match(subj); len(r.Psubs) != 1 {
					b.Fatalf("matched %d", len(r.Psubs))
				}
			}
		})
	}
}

// BenchmarkSublistMatchParallel measures cache hits from all CPUs at once,
// the shape of many publishers sharing one router.
func BenchmarkSublistMatchParallel(b *testing.B) {
	s := benchSublist(b, 1000)
	subj := []byte("bench.0.x")
	s.Match(subj)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Match(subj)
		}
	})
}

// BenchmarkSublistInsertRemove measures subscription churn against a warm
// cache of cacheMax subjects, which every wildcard change must scan.
func BenchmarkSublistInsertRemove(b *testing.B) {
	s := benchSublist(b, 1000)
	for i := range cacheMax {
		s.Match(fmt.Appendf(nil, "bench.%d.x", i))
	}
	for _, f := range []string{"bench.7.x", "bench.*.x"} {
		sub := newSub(f, "")
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Insert(sub)
				_ = s.Remove(sub)
			}
		})
	}
}
