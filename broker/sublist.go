package broker

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/busbar/busbar/subject"
)

const (
	cacheMax   = 4096 // cached subjects per sublist
	cacheEvict = 64   // entries dropped when a full cache takes a new one
	indexAt    = 16   // a subset longer than this keeps a position index
)

// Result is the set of subscriptions matching one subject. Immutable once
// returned: shared between goroutines, never modified, so callers read it
// without locks and may keep it as long as they like.
type Result struct {
	Psubs []*Subscription   // plain subscribers
	Qsubs [][]*Subscription // one slice per queue group (all members of that group matching the subject)
	fwd   bool              // a Forwarder's subscription is among them (interest.go)
	// local is Psubs without the account imports' routes, which are in
	// imports (the same slice as Psubs when there are none): publishers
	// walk the two lists, so no delivery asks a Client for its type.
	local   []*Subscription
	imports []importSub
}

// importSub is an import's subscription in the exporting (stream) or
// importing (service) account's router, with its route.
type importSub struct {
	sub *Subscription
	rt  *route
}

// emptyResult is the shared answer when nothing matches.
var emptyResult = &Result{}

// sublist is the router: a trie of subject tokens plus a cache of match
// results keyed by literal subject. Safe for concurrent use; mu guards
// every field except cacheMax, which is fixed before first use.
type sublist struct {
	mu       sync.RWMutex
	root     *level
	count    int
	gen      uint64        // bumped by every change to the trie
	agen     atomic.Uint64 // gen, readable without s.mu (per-session caches)
	cache    map[string]*Result
	cacheMax int            // 0 disables the cache
	watch    *interestTable // interest watchers (interest.go); nil: none
}

// level is one token position of the trie. Wildcard tokens have their own
// children so matching never scans the literal ones.
type level struct {
	nodes    map[string]*node
	pwc, fwc *node // children for the tokens "*" and ">"
}

// node is the end of one token path: the subscriptions whose filter ends
// here, and the next level for longer filters.
type node struct {
	next  *level
	psubs subset
	qsubs map[string]*subset // by queue name; nil while there are none
}

// subset is a set of subscriptions kept as a slice for fast copying into
// results. idx, built once the slice is long, makes lookups constant time.
type subset struct {
	list []*Subscription
	idx  map[*Subscription]int // position in list
}

// newSublist returns an empty router with the match cache enabled.
func newSublist() *sublist {
	return &sublist{
		root:     &level{},
		cache:    make(map[string]*Result),
		cacheMax: cacheMax,
	}
}

// Insert adds sub under its filter sub.Subject, which must satisfy
// subject.ValidFilter. Inserting a subscription already present is a no-op.
// The router keeps sub until Remove; sub.Subject and sub.Queue must not
// change meanwhile. Takes s.mu for writing.
func (s *sublist) Insert(sub *Subscription) error {
	if !subject.ValidFilter(sub.Subject) {
		return ErrInvalidSubject
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, filter := s.root, sub.Subject
	for {
		tok, rest, more := bytes.Cut(filter, []byte{'.'})
		n := l.child(tok, true)
		if !more {
			if !n.add(sub) {
				return nil
			}
			break
		}
		if n.next == nil {
			n.next = &level{}
		}
		l, filter = n.next, rest
	}
	s.count++
	s.gen++
	s.agen.Store(s.gen)
	s.updateCache(sub, true)
	if s.watch != nil {
		s.watch.changed(sub, 1)
	}
	return nil
}

// step is one node on the path to a filter, for pruning after Remove.
type step struct {
	l   *level
	n   *node
	tok []byte
}

// Remove takes out exactly the subscription sub (compared by pointer). It
// returns ErrNoSubscription when sub is not in the router. Empty nodes are
// pruned. Takes s.mu for writing.
func (s *sublist) Remove(sub *Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stack [16]step
	path := stack[:0]
	l, filter := s.root, sub.Subject
	for l != nil {
		tok, rest, more := bytes.Cut(filter, []byte{'.'})
		n := l.child(tok, false)
		if n == nil {
			return ErrNoSubscription
		}
		path = append(path, step{l, n, tok})
		if !more {
			if !n.remove(sub) {
				return ErrNoSubscription
			}
			s.count--
			s.gen++
			s.agen.Store(s.gen)
			prune(path)
			s.updateCache(sub, false)
			if s.watch != nil {
				s.watch.changed(sub, -1)
			}
			return nil
		}
		l, filter = n.next, rest
	}
	return ErrNoSubscription
}

// prune unlinks the empty nodes at the end of path, deepest first, and the
// levels they leave empty. s.mu held for writing.
func prune(path []step) {
	for i := len(path) - 1; i >= 0; i-- {
		st := path[i]
		if !st.n.empty() {
			return
		}
		st.l.drop(st.tok)
		if i > 0 && st.l.empty() {
			path[i-1].n.next = nil
		}
	}
}

// Match returns the subscriptions whose filters match subj, a valid literal
// subject that is only read during the call (an empty one matches nothing). The result is shared and
// immutable, and never nil. A cache hit takes s.mu for reading and does not
// allocate; a miss computes under the read lock, then takes s.mu for
// writing to store the result.
func (s *sublist) Match(subj []byte) *Result {
	if len(subj) == 0 {
		return emptyResult
	}
	s.mu.RLock()
	if r, ok := s.cache[string(subj)]; ok {
		s.mu.RUnlock()
		return r
	}
	var b resultBuilder
	b.collect(s.root, subj)
	r, gen := b.result(), s.gen
	s.mu.RUnlock()
	if s.cacheMax > 0 {
		r = s.store(subj, r, gen)
	}
	return r
}

// store caches r, computed for subj at generation gen, unless the trie has
// changed since; it returns the result Match should answer. Takes s.mu for
// writing.
func (s *sublist) store(subj []byte, r *Result, gen uint64) *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cache[string(subj)]; ok {
		return c // stored by a concurrent Match and kept current since
	}
	if s.gen != gen {
		return r // correct when computed; too old to cache
	}
	if len(s.cache) >= s.cacheMax {
		n := 0
		for k := range s.cache { // map order: a random handful
			delete(s.cache, k)
			if n++; n >= cacheEvict {
				break
			}
		}
	}
	s.cache[string(subj)] = r
	return r
}

// updateCache replaces every cached result whose subject sub's filter
// matches by a copy with sub added (insert) or removed. s.mu held for
// writing.
func (s *sublist) updateCache(sub *Subscription, insert bool) {
	change := (*Result).without
	if insert {
		change = (*Result).with
	}
	if subject.IsLiteral(sub.Subject) {
		if r, ok := s.cache[string(sub.Subject)]; ok {
			s.cache[string(sub.Subject)] = change(r, sub)
		}
		return
	}
	for k, r := range s.cache {
		// Match only reads its arguments, so viewing k as bytes is safe.
		if subject.Match(sub.Subject, unsafe.Slice(unsafe.StringData(k), len(k))) {
			s.cache[k] = change(r, sub)
		}
	}
}

// Count is the number of subscriptions in the router. Takes s.mu for reading.
func (s *sublist) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.count
}

// CacheLen is the number of cached match results. Takes s.mu for reading.
func (s *sublist) CacheLen() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.cache)
}

// child returns l's child for tok, creating it when create is set;
// otherwise it may return nil. s.mu held (for writing when create).
func (l *level) child(tok []byte, create bool) *node {
	p := &l.fwc
	switch {
	case isWildTok(tok, '*'):
		p = &l.pwc
	case isWildTok(tok, '>'):
	default:
		n := l.nodes[string(tok)]
		if n == nil && create {
			if l.nodes == nil {
				l.nodes = make(map[string]*node)
			}
			n = &node{}
			l.nodes[string(tok)] = n
		}
		return n
	}
	if *p == nil && create {
		*p = &node{}
	}
	return *p
}

// drop unlinks l's child for tok. s.mu held for writing.
func (l *level) drop(tok []byte) {
	switch {
	case isWildTok(tok, '*'):
		l.pwc = nil
	case isWildTok(tok, '>'):
		l.fwc = nil
	default:
		delete(l.nodes, string(tok))
	}
}

// empty reports whether l has no children. s.mu held.
func (l *level) empty() bool {
	return len(l.nodes) == 0 && l.pwc == nil && l.fwc == nil
}

func isWildTok(tok []byte, c byte) bool { return len(tok) == 1 && tok[0] == c }

// add puts sub in the plain set or its queue group; false if present.
// s.mu held for writing.
func (n *node) add(sub *Subscription) bool {
	if len(sub.Queue) == 0 {
		return n.psubs.add(sub)
	}
	g := n.qsubs[string(sub.Queue)]
	if g == nil {
		if n.qsubs == nil {
			n.qsubs = make(map[string]*subset)
		}
		g = &subset{}
		n.qsubs[string(sub.Queue)] = g
	}
	return g.add(sub)
}

// remove takes sub out of n, dropping its queue group when that empties;
// false if absent. s.mu held for writing.
func (n *node) remove(sub *Subscription) bool {
	if len(sub.Queue) == 0 {
		return n.psubs.remove(sub)
	}
	g := n.qsubs[string(sub.Queue)]
	if g == nil || !g.remove(sub) {
		return false
	}
	if len(g.list) == 0 {
		delete(n.qsubs, string(sub.Queue))
	}
	return true
}

// empty reports whether n holds no subscription and no longer filter.
// s.mu held.
func (n *node) empty() bool {
	return len(n.psubs.list) == 0 && len(n.qsubs) == 0 && n.next == nil
}

// find returns sub's position in the set, or -1. s.mu held.
func (s *subset) find(sub *Subscription) int {
	if s.idx != nil {
		if i, ok := s.idx[sub]; ok {
			return i
		}
		return -1
	}
	for i, x := range s.list {
		if x == sub {
			return i
		}
	}
	return -1
}

// add appends sub unless present. s.mu held for writing.
func (s *subset) add(sub *Subscription) bool {
	if s.find(sub) >= 0 {
		return false
	}
	s.list = append(s.list, sub)
	switch {
	case s.idx != nil:
		s.idx[sub] = len(s.list) - 1
	case len(s.list) > indexAt:
		s.idx = make(map[*Subscription]int, len(s.list))
		for i, x := range s.list {
			s.idx[x] = i
		}
	}
	return true
}

// remove deletes sub by moving the last element into its place. Results
// hold copies, so reordering the list is safe. s.mu held for writing.
func (s *subset) remove(sub *Subscription) bool {
	i := s.find(sub)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	moved := s.list[last]
	s.list[i], s.list[last] = moved, nil
	s.list = s.list[:last]
	if s.idx != nil {
		delete(s.idx, sub)
		if moved != sub {
			s.idx[moved] = i
		}
	}
	return true
}

// resultBuilder gathers one uncached match. Owned by one Match call.
type resultBuilder struct {
	psubs  []*Subscription
	qsubs  [][]*Subscription
	byName map[string]int // queue name to index in qsubs, once there are many
}

// collect adds every node under l whose filter matches subj, a non-empty
// literal. Each matching filter is reached by exactly one path, so no
// subscription is added twice. s.mu held for reading.
func (b *resultBuilder) collect(l *level, subj []byte) {
	for l != nil {
		tok, rest, more := bytes.Cut(subj, []byte{'.'})
		if l.fwc != nil {
			b.addNode(l.fwc)
		}
		if l.pwc != nil {
			if more {
				b.collect(l.pwc.next, rest)
			} else {
				b.addNode(l.pwc)
			}
		}
		n := l.nodes[string(tok)]
		if n == nil {
			return
		}
		if !more {
			b.addNode(n)
			return
		}
		l, subj = n.next, rest
	}
}

// addNode copies n's subscriptions into the result, merging queue groups
// by name with those found at other nodes. s.mu held for reading.
func (b *resultBuilder) addNode(n *node) {
	b.psubs = append(b.psubs, n.psubs.list...)
	for name, g := range n.qsubs {
		if i := b.group(name); i >= 0 {
			b.qsubs[i] = append(b.qsubs[i], g.list...)
			continue
		}
		b.qsubs = append(b.qsubs, append([]*Subscription(nil), g.list...))
		if b.byName != nil {
			b.byName[name] = len(b.qsubs) - 1
		}
	}
}

// group returns the index of queue group name in b.qsubs, or -1.
func (b *resultBuilder) group(name string) int {
	if b.byName == nil && len(b.qsubs) > indexAt {
		b.byName = make(map[string]int, len(b.qsubs))
		for i, q := range b.qsubs {
			b.byName[string(q[0].Queue)] = i
		}
	}
	if b.byName != nil {
		if i, ok := b.byName[name]; ok {
			return i
		}
		return -1
	}
	for i, q := range b.qsubs {
		if string(q[0].Queue) == name {
			return i
		}
	}
	return -1
}

// result returns the gathered Result, the shared empty one if nothing
// matched.
func (b *resultBuilder) result() *Result {
	return newResult(b.psubs, b.qsubs)
}

func newResult(psubs []*Subscription, qsubs [][]*Subscription) *Result {
	if len(psubs) == 0 && len(qsubs) == 0 {
		return emptyResult
	}
	r := &Result{Psubs: psubs, Qsubs: qsubs, fwd: hasForwarder(psubs, qsubs), local: psubs}
	n := 0
	for _, sub := range psubs {
		if _, ok := sub.Client.(*route); ok {
			n++
		}
	}
	if n > 0 {
		r.local, r.imports = make([]*Subscription, 0, len(psubs)-n), make([]importSub, 0, n)
		for _, sub := range psubs {
			if rt, ok := sub.Client.(*route); ok {
				r.imports = append(r.imports, importSub{sub, rt})
			} else {
				r.local = append(r.local, sub)
			}
		}
	}
	return r
}

// with returns a copy of r that also holds sub; r is left unchanged. The
// full slice expressions make every append copy rather than write into
// spare capacity another Result could share.
func (r *Result) with(sub *Subscription) *Result {
	if len(sub.Queue) == 0 {
		return newResult(append(r.Psubs[:len(r.Psubs):len(r.Psubs)], sub), r.Qsubs)
	}
	qs := make([][]*Subscription, len(r.Qsubs), len(r.Qsubs)+1)
	copy(qs, r.Qsubs)
	for i, g := range qs {
		if bytes.Equal(g[0].Queue, sub.Queue) {
			qs[i] = append(g[:len(g):len(g)], sub)
			return newResult(r.Psubs, qs)
		}
	}
	return newResult(r.Psubs, append(qs, []*Subscription{sub}))
}

// without returns a copy of r lacking sub (r itself if sub is absent); r
// is left unchanged. An emptied queue group disappears.
func (r *Result) without(sub *Subscription) *Result {
	if len(sub.Queue) == 0 {
		return newResult(withoutSub(r.Psubs, sub), r.Qsubs)
	}
	for i, g := range r.Qsubs {
		if !bytes.Equal(g[0].Queue, sub.Queue) {
			continue
		}
		qs := make([][]*Subscription, 0, len(r.Qsubs))
		qs = append(qs, r.Qsubs[:i]...)
		if ng := withoutSub(g, sub); len(ng) > 0 {
			qs = append(qs, ng)
		}
		return newResult(r.Psubs, append(qs, r.Qsubs[i+1:]...))
	}
	return r
}

// withoutSub returns a new slice of list lacking sub, or list itself when
// sub is absent.
func withoutSub(list []*Subscription, sub *Subscription) []*Subscription {
	for i, x := range list {
		if x == sub {
			out := make([]*Subscription, 0, len(list)-1)
			out = append(out, list[:i]...)
			return append(out, list[i+1:]...)
		}
	}
	return list
}
