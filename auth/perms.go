package auth

import (
	"fmt"
	"strings"
	"time"

	"github.com/busbar/busbar/subject"
)

// SubjectPermission allows and denies subjects (filters with * and >).
// Deny wins over allow; an empty Allow list allows everything not denied.
// A subscribe entry may name a queue group after a space ("orders.* q1";
// the queue may itself hold wildcards): it then applies to queue
// subscriptions in a matching group only.
type SubjectPermission struct {
	Allow []string
	Deny  []string
}

// Permissions is what an identity may publish and subscribe to. A nil
// *Permissions allows everything.
type Permissions struct {
	Publish        *SubjectPermission
	Subscribe      *SubjectPermission
	AllowResponses *ResponsePermission // nil: no implicit reply permission
}

// Default allow_responses limits, as nats-server has them.
const (
	DefaultResponseMax     = 1
	DefaultResponseExpires = 2 * time.Minute
)

// ResponseLimits returns allow_responses with nats-server's defaults for
// zero fields, or nil when p grants no response permission.
func (p *Permissions) ResponseLimits() *ResponsePermission {
	if p == nil || p.AllowResponses == nil {
		return nil
	}
	r := *p.AllowResponses
	if r.Max == 0 {
		r.Max = DefaultResponseMax
	}
	if r.Expires == 0 {
		r.Expires = DefaultResponseExpires
	}
	return &r
}

// matchAny reports whether any filter in list matches subj. Entries are
// valid subjects (checked by Validate); subj may hold wildcards, compared
// token by token (a filter "a.>" covers the filter "a.*").
func matchAny(list []string, subj []byte) bool {
	for _, f := range list {
		if match(f, subj) {
			return true
		}
	}
	return false
}

// match is subject.Match with the filter as a string, so checking a
// configured entry never converts (or allocates).
func match(f string, subj []byte) bool {
	if len(f) == 0 || len(subj) == 0 {
		return false
	}
	for {
		ft, frest, fmore := strings.Cut(f, ".")
		st, srest, smore := cutB(subj)
		if ft == ">" {
			return true
		}
		if ft != "*" && ft != string(st) {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		f, subj = frest, srest
	}
}

// collide reports whether some subject matches both filters.
func collide(a string, b []byte) bool {
	for {
		at, arest, amore := strings.Cut(a, ".")
		bt, brest, bmore := cutB(b)
		if at == ">" || string(bt) == ">" {
			return true
		}
		if at != "*" && string(bt) != "*" && at != string(bt) {
			return false
		}
		if !amore || !bmore {
			return amore == bmore
		}
		a, b = arest, brest
	}
}

// NeedsDeliveryFilter reports whether a subscription to filter (in queue
// group queue) was allowed although it overlaps a deny entry (a wildcard
// subscription beside "deny: [a.secret]"): the broker then checks each
// delivery with CanReceive, as nats-server does.
func (p *Permissions) NeedsDeliveryFilter(filter, queue []byte) bool {
	if p == nil || p.Subscribe == nil {
		return false
	}
	for _, e := range p.Subscribe.Deny {
		s, q := splitQueue(e)
		if (q == "" || len(queue) > 0) && collide(s, filter) {
			return true
		}
	}
	return false
}

// CanReceive reports whether a message on the literal subj may be
// delivered to a subscription in queue group queue (nil: none): no
// subscribe deny entry matches it. No allocation.
func (p *Permissions) CanReceive(subj, queue []byte) bool {
	if p == nil || p.Subscribe == nil {
		return true
	}
	for _, e := range p.Subscribe.Deny {
		s, q := splitQueue(e)
		if !match(s, subj) {
			continue
		}
		if q == "" || (len(queue) > 0 && (q == string(queue) || match(q, queue))) {
			return false
		}
	}
	return true
}

// CanPublish reports whether publishing to the literal subject is allowed
// by the static lists. With allow_responses and no publish allow list,
// nats-server turns the blanket allow off: only replies are allowed, which
// the broker tracks per connection (CanPublish then reports false).
func (p *Permissions) CanPublish(subj []byte) bool {
	if p == nil {
		return true
	}
	sp := p.Publish
	if sp == nil || len(sp.Allow) == 0 {
		if p.AllowResponses != nil {
			return false
		}
		return sp == nil || !matchAny(sp.Deny, subj)
	}
	return matchAny(sp.Allow, subj) && !matchAny(sp.Deny, subj)
}

// covers reports whether the entry filter e matches every subject the
// filter f can match: token by token, "*" covers any token but ">", and
// ">" covers the rest. (nats-server lets an allow entry "a.*" cover a
// subscription to "a.>"; busbar does not, since that would deliver
// "a.b.c".)
func covers(e string, f []byte) bool {
	for {
		et, erest, emore := strings.Cut(e, ".")
		if len(f) == 0 {
			return false
		}
		ft, frest, fmore := cutB(f)
		switch {
		case et == ">":
			return true
		case et == "*":
			if string(ft) == ">" {
				return false
			}
		case et != string(ft):
			return false
		}
		if !emore || !fmore {
			return emore == fmore
		}
		e, f = erest, frest
	}
}

func cutB(s []byte) (tok, rest []byte, more bool) {
	for i, c := range s {
		if c == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, nil, false
}

// splitQueue cuts a subscribe entry "subject queue" in two.
func splitQueue(e string) (subj, queue string) {
	e = strings.TrimSpace(e)
	if i := strings.IndexAny(e, " \t"); i >= 0 {
		return e[:i], strings.TrimSpace(e[i+1:])
	}
	return e, ""
}

// subMatch is how a list of subscribe entries answers one subscription:
// whether a plain entry covers the filter, whether any queue entry does,
// and whether one of those names the subscription's queue group.
func subMatch(list []string, filter, queue []byte) (plain, queued, queueHit bool) {
	for _, e := range list {
		s, q := splitQueue(e)
		if !covers(s, filter) {
			continue
		}
		if q == "" {
			plain = true
			continue
		}
		queued = true
		if len(queue) > 0 && (q == string(queue) || match(q, queue)) {
			queueHit = true
		}
	}
	return plain, queued, queueHit
}

// CanSubscribe reports whether subscribing to filter (in queue group
// queue, or nil) is allowed, as nats-server decides it: a filter with
// wildcards is allowed when an allow entry covers it token by token; for a
// queue subscription, entries naming queue groups decide when any match
// the subject. Deny wins.
func (p *Permissions) CanSubscribe(filter, queue []byte) bool {
	if p == nil || p.Subscribe == nil {
		return true
	}
	sp := p.Subscribe
	if len(sp.Allow) > 0 {
		plain, queued, hit := subMatch(sp.Allow, filter, queue)
		allowed := plain
		if len(queue) > 0 && queued {
			allowed = hit
		}
		if !allowed {
			return false
		}
	}
	plain, queued, hit := subMatch(sp.Deny, filter, queue)
	if plain {
		return false
	}
	return !(len(queue) > 0 && queued && hit)
}

// Validate checks every entry's subject syntax.
func (p *Permissions) Validate() error {
	if p == nil {
		return nil
	}
	check := func(what string, list []string, queues bool) error {
		for _, e := range list {
			s, q := e, ""
			if queues {
				s, q = splitQueue(e)
			}
			if !subject.ValidFilter([]byte(s)) || (q != "" && !subject.ValidFilter([]byte(q))) {
				return fmt.Errorf("%w: %s: invalid subject %q", ErrConfig, what, e)
			}
		}
		return nil
	}
	for _, c := range []struct {
		what   string
		sp     *SubjectPermission
		queues bool
	}{{"publish", p.Publish, false}, {"subscribe", p.Subscribe, true}} {
		if c.sp == nil {
			continue
		}
		if err := check(c.what+" allow", c.sp.Allow, c.queues); err != nil {
			return err
		}
		if err := check(c.what+" deny", c.sp.Deny, c.queues); err != nil {
			return err
		}
	}
	if r := p.AllowResponses; r != nil && (r.Max < 0 || r.Expires < 0) {
		return fmt.Errorf("%w: allow_responses: max and expires must not be negative", ErrConfig)
	}
	return nil
}
