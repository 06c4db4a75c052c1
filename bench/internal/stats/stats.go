// Package stats holds the figures the bench programs share: a latency
// histogram and the median of runs.
package stats

import (
	"math/bits"
	"sort"
)

// Hist is a log-linear latency histogram in ns: 64 sub-buckets per power
// of two (relative error under 1.6%). The zero value is empty.
type Hist struct {
	b [4096]int64
	n int64
}

// Add records v ns (a negative v counts as 0).
func (h *Hist) Add(v int64) {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	idx := int(u)
	if u >= 128 {
		shift := bits.Len64(u) - 7
		idx = 64 + shift*64 + int(u>>shift) - 64
	}
	if idx >= len(h.b) {
		idx = len(h.b) - 1
	}
	h.b[idx]++
	h.n++
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.b {
		h.b[i] += c
	}
	h.n += o.n
}

// Quantile returns the q-quantile in ns (the bucket's midpoint), 0 when
// empty.
func (h *Hist) Quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	target := int64(q*float64(h.n-1)) + 1
	var acc int64
	for i, c := range h.b {
		acc += c
		if acc >= target {
			if i < 128 {
				return float64(i)
			}
			shift := (i - 64) / 64
			lo := uint64((i-64)%64+64) << shift
			return float64(lo) + float64(uint64(1)<<shift)/2
		}
	}
	return 0
}

// Median returns the middle value of v (the upper one of an even count),
// 0 for none. v is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
