package broker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/busbar/busbar/subject"
)

// newSub returns a subscription on filter, in queue group queue if not "".
func newSub(filter, queue string) *Subscription {
	s := &Subscription{Subject: []byte(filter)}
	if queue != "" {
		s.Queue = []byte(queue)
	}
	return s
}

// describe renders r canonically: sorted plain filters, then each queue
// group as "queue:filter,filter" in sorted order. Subscriptions are told
// apart by their Opaque label when it is set.
func describe(r *Result) string {
	label := func(s *Subscription) string {
		if l, ok := s.Opaque.(string); ok {
			return l
		}
		return string(s.Subject)
	}
	var ps []string
	for _, s := range r.Psubs {
		ps = append(ps, label(s))
	}
	sort.Strings(ps)
	var qs []string
	for _, g := range r.Qsubs {
		var ms []string
		for _, s := range g {
			ms = append(ms, label(s))
		}
		sort.Strings(ms)
		qs = append(qs, string(g[0].Queue)+":"+strings.Join(ms, ","))
	}
	sort.Strings(qs)
	return strings.Join(ps, " ") + " | " + strings.Join(qs, " ")
}

// reference computes the expected description of a match by brute force.
func reference(subs []*Subscription, subj string) string {
	r := &Result{}
	groups := map[string]int{}
	for _, s := range subs {
		if !subject.Match(s.Subject, []byte(subj)) {
			continue
		}
		if len(s.Queue) == 0 {
			r.Psubs = append(r.Psubs, s)
			continue
		}
		i, ok := groups[string(s.Queue)]
		if !ok {
			i = len(r.Qsubs)
			groups[string(s.Queue)] = i
			r.Qsubs = append(r.Qsubs, nil)
		}
		r.Qsubs[i] = append(r.Qsubs[i], s)
	}
	return describe(r)
}

func TestSublistMatch(t *testing.T) {
	filters := []string{
		"foo", "foo.bar", "foo.baz", "foo.*", "foo.>", "*.bar", "*.*",
		">", "foo.bar.baz", "foo.*.baz", "Foo.bar", "a*b.c", "bar.>",
	}
	tests := []struct {
		name, subj, want string
	}{
		{"single token", "foo", "> foo | "},
		{"literal and wildcards", "foo.bar", "*.* *.bar > foo.* foo.> foo.bar | "},
		{"star not deeper", "foo.bar.baz", "> foo.*.baz foo.> foo.bar.baz | "},
		{"gt deep", "foo.x.y.z", "> foo.> | "},
		{"case sensitive", "Foo.bar", "*.* *.bar > Foo.bar | "},
		{"embedded star literal", "a*b.c", "*.* > a*b.c | "},
		{"embedded star no match", "axb.c", "*.* > | "},
		{"gt not own prefix", "bar", "> | "},
		{"gt child", "bar.x", "*.* > bar.> | "},
		{"only full wildcard", "zzz", "> | "},
	}
	s := newSublist()
	for _, f := range filters {
		if err := s.Insert(newSub(f, "")); err != nil {
			t.Fatalf("Insert(%q): %v", f, err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // uncached, then cached
				if got := describe(s.Match([]byte(tt.subj))); got != tt.want {
					t.Errorf("Match(%q) = %q, want %q", tt.subj, got, tt.want)
				}
			}
		})
	}
}

func TestSublistInsertInvalid(t *testing.T) {
	for _, f := range []string{"", "foo..bar", "foo.>.bar", ">.>", "foo bar", "foo."} {
		t.Run(f, func(t *testing.T) {
			s := newSublist()
			if err := s.Insert(newSub(f, "")); !errors.Is(err, ErrInvalidSubject) {
				t.Errorf("Insert(%q) = %v, want ErrInvalidSubject", f, err)
			}
			if s.Count() != 0 {
				t.Errorf("Count = %d, want 0", s.Count())
			}
		})
	}
}

func TestSublistDuplicateInsert(t *testing.T) {
	s := newSublist()
	for _, sub := range []*Subscription{newSub("foo.*", ""), newSub("foo.*", "q")} {
		for range 3 {
			if err := s.Insert(sub); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := s.Match([]byte("foo.bar"))
	if s.Count() != 2 || len(r.Psubs) != 1 || len(r.Qsubs) != 1 || len(r.Qsubs[0]) != 1 {
		t.Errorf("Count %d, result %q: want each subscription once", s.Count(), describe(r))
	}
}

func TestSublistQueueGroups(t *testing.T) {
	tests := []struct {
		name string
		subs [][3]string // label, filter, queue
		subj string
		want string
	}{
		{"two members one node", [][3]string{{"a", "foo", "q"}, {"b", "foo", "q"}}, "foo", " | q:a,b"},
		{"merged across nodes", [][3]string{{"a", "foo.*", "q"}, {"b", "foo.bar", "q"}, {"c", ">", "q"}}, "foo.bar", " | q:a,b,c"},
		{"distinct groups", [][3]string{{"a", "foo", "q1"}, {"b", "foo", "q2"}, {"c", "foo.*", "q2"}}, "foo.x", " | q2:c"},
		{"plain and queue", [][3]string{{"a", "foo", ""}, {"b", "foo", "q"}, {"c", "*", "q"}}, "foo", "a | q:b,c"},
		{"partial group", [][3]string{{"a", "foo.bar", "q"}, {"b", "foo.baz", "q"}}, "foo.bar", " | q:a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSublist()
			for _, d := range tt.subs {
				sub := newSub(d[1], d[2])
				sub.Opaque = d[0]
				if err := s.Insert(sub); err != nil {
					t.Fatal(err)
				}
			}
			if got := describe(s.Match([]byte(tt.subj))); got != tt.want {
				t.Errorf("Match(%q) = %q, want %q", tt.subj, got, tt.want)
			}
		})
	}
}

// TestSublistManyQueueGroups crosses the size at which subsets and the
// result builder switch to index maps.
func TestSublistManyQueueGroups(t *testing.T) {
	s := newSublist()
	var subs []*Subscription
	for i := range 3 * indexAt {
		for _, f := range []string{"foo.bar", "foo.*", ">"} {
			sub := newSub(f, fmt.Sprintf("q%d", i%(indexAt+5)))
			sub.Opaque = fmt.Sprintf("%s#%d", f, i)
			subs = append(subs, sub, newSub(f, ""))
		}
	}
	for _, sub := range subs {
		if err := s.Insert(sub); err != nil {
			t.Fatal(err)
		}
	}
	for i, sub := range subs {
		if i%3 == 0 {
			if err := s.Remove(sub); err != nil {
				t.Fatal(err)
			}
		}
	}
	var live []*Subscription
	for i, sub := range subs {
		if i%3 != 0 {
			live = append(live, sub)
		}
	}
	if got, want := describe(s.Match([]byte("foo.bar"))), reference(live, "foo.bar"); got != want {
		t.Errorf("Match = %q\nwant    %q", got, want)
	}
}

func TestSublistRemove(t *testing.T) {
	s := newSublist()
	a, b, c := newSub("foo.bar", ""), newSub("foo.*", "q"), newSub("foo.>", "")
	for _, sub := range []*Subscription{a, b, c} {
		if err := s.Insert(sub); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove(newSub("foo.bar", "")); !errors.Is(err, ErrNoSubscription) {
		t.Errorf("Remove(other pointer) = %v, want ErrNoSubscription", err)
	}
	if err := s.Remove(newSub("nope.x", "")); !errors.Is(err, ErrNoSubscription) {
		t.Errorf("Remove(unknown filter) = %v, want ErrNoSubscription", err)
	}
	if err := s.Remove(newSub("foo.*", "other")); !errors.Is(err, ErrNoSubscription) {
		t.Errorf("Remove(unknown queue) = %v, want ErrNoSubscription", err)
	}
	for _, sub := range []*Subscription{b, a, c} {
		if err := s.Remove(sub); err != nil {
			t.Fatalf("Remove(%s): %v", sub.Subject, err)
		}
		if err := s.Remove(sub); !errors.Is(err, ErrNoSubscription) {
			t.Errorf("second Remove(%s) = %v, want ErrNoSubscription", sub.Subject, err)
		}
	}
	if s.Count() != 0 {
		t.Errorf("Count = %d, want 0", s.Count())
	}
	if !s.root.empty() {
		t.Errorf("trie not pruned: root %+v", s.root)
	}
	if r := s.Match([]byte("foo.bar")); r != emptyResult {
		t.Errorf("Match after removing all = %q, want the empty result", describe(r))
	}
}

// TestSublistCacheCoherency runs random inserts and removes interleaved
// with matches of a fixed set of subjects (so they are cached) and checks
// every answer against brute force. It also checks that results returned
// earlier never change.
func TestSublistCacheCoherency(t *testing.T) {
	toks := []string{"a", "b", "c"}
	var filters, subjects []string
	for _, x := range toks {
		subjects = append(subjects, x)
		filters = append(filters, x, x+".*", x+".>")
		for _, y := range toks {
			subjects = append(subjects, x+"."+y)
			filters = append(filters, x+"."+y, "*."+y, x+".*."+y)
		}
	}
	filters = append(filters, "*", ">", "*.*", "*.>")
	rng := rand.New(rand.NewPCG(1, 2))
	s := newSublist()
	var live []*Subscription
	type seen struct {
		r    *Result
		desc string
	}
	var kept []seen
	for i := range 1200 {
		if len(live) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(live))
			if err := s.Remove(live[j]); err != nil {
				t.Fatal(err)
			}
			live = slices.Delete(live, j, j+1)
		} else {
			queue := []string{"", "", "q1", "q2"}[rng.IntN(4)]
			sub := newSub(filters[rng.IntN(len(filters))], queue)
			sub.Opaque = fmt.Sprint(i)
			if err := s.Insert(sub); err != nil {
				t.Fatal(err)
			}
			live = append(live, sub)
		}
		for _, subj := range subjects {
			r := s.Match([]byte(subj))
			if got, want := describe(r), reference(live, subj); got != want {
				t.Fatalf("op %d: Match(%q) = %q\nwant %q", i, subj, got, want)
			}
			if i%20 == 0 {
				kept = append(kept, seen{r, describe(r)})
			}
		}
	}
	for _, k := range kept {
		if got := describe(k.r); got != k.desc {
			t.Fatalf("a returned Result changed: %q, was %q", got, k.desc)
		}
	}
	if s.CacheLen() != len(subjects) {
		t.Errorf("CacheLen = %d, want %d", s.CacheLen(), len(subjects))
	}
}

func TestSublistCacheEviction(t *testing.T) {
	s := newSublist()
	s.cacheMax = 100
	if err := s.Insert(newSub("x.>", "")); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		subj := []byte(fmt.Sprintf("x.%d", i))
		if r := s.Match(subj); len(r.Psubs) != 1 {
			t.Fatalf("Match(%s) = %q", subj, describe(r))
		}
		if n := s.CacheLen(); n > s.cacheMax || n == 0 {
			t.Fatalf("CacheLen = %d, want 1..%d", n, s.cacheMax)
		}
	}
	s.cacheMax = 0
	s.cache = map[string]*Result{}
	s.Match([]byte("x.1"))
	if n := s.CacheLen(); n != 0 {
		t.Errorf("CacheLen with cache disabled = %d, want 0", n)
	}
}

func TestSublistCacheHitZeroAllocs(t *testing.T) {
	s := newSublist()
	for _, f := range []string{"foo.bar.baz.qux.quux.corge", "foo.>", "*.bar.>"} {
		if err := s.Insert(newSub(f, "")); err != nil {
			t.Fatal(err)
		}
	}
	for _, subj := range []string{"foo.bar.baz.qux.quux.corge", "nothing.matches.this.long.subject"} {
		b := []byte(subj)
		s.Match(b) // fill the cache
		if n := testing.AllocsPerRun(1000, func() { s.Match(b) }); n != 0 {
			t.Errorf("cache hit on %q: %v allocations, want 0", subj, n)
		}
	}
}

// TestSublistConcurrent runs matches against concurrent inserts and
// removes; run it with -race. Each writer owns a filter that only it uses,
// so every reader can check what must be present at the end.
func TestSublistConcurrent(t *testing.T) {
	s := newSublist()
	stable := newSub("conc.>", "")
	if err := s.Insert(stable); err != nil {
		t.Fatal(err)
	}
	const writers, readers, rounds = 4, 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				sub := newSub(fmt.Sprintf("conc.%d.*", w), []string{"", "q"}[i%2])
				if err := s.Insert(sub); err != nil {
					t.Error(err)
					return
				}
				if err := s.Remove(sub); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for rd := range readers {
		wg.Go(func() {
			for i := range rounds * 4 {
				r := s.Match(fmt.Appendf(nil, "conc.%d.%d", (rd+i)%writers, i%7))
				if !slices.Contains(r.Psubs, stable) {
					t.Error("stable subscription missing from a match")
					return
				}
				for _, g := range r.Qsubs {
					_ = len(g) // read the shared result, as Publish would
				}
			}
		})
	}
	wg.Wait()
	if s.Count() != 1 {
		t.Errorf("Count = %d, want 1", s.Count())
	}
	for w := range writers {
		subj := fmt.Sprintf("conc.%d.x", w)
		if got := describe(s.Match([]byte(subj))); got != "conc.> | " {
			t.Errorf("Match(%q) after writers = %q", subj, got)
		}
	}
}
