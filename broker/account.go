package broker

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Accounts: each account is its own subject space with its own router
// (a *sublist). A session uses the router of its identity's account;
// identities that name no account share the global one ($G). Exports and
// imports are internal subscriptions, as in nats-server: a stream import
// subscribes in the exporter's router and forwards into the importer's, a
// service import subscribes in the importer's router and forwards into the
// exporter's, whose responses come back through a reply mapping. So the
// publish path of an account with no imports is exactly the path of a
// broker with no accounts.

// GlobalAccount is the account of identities that name none (nats-server's $G).
const GlobalAccount = "$G"

// DefaultResponseThreshold is how long a service import waits for
// responses to one request (nats-server's default).
const DefaultResponseThreshold = 2 * time.Minute

// Account declares an account's exports and imports (`accounts { NAME {
// exports, imports } }`). Users join an account through their
// Identity.Account; an account no Account entry declares still gets its
// own subject space (operator-mode accounts), with no exports or imports.
type Account struct {
	Name    string
	Exports []Export
	Imports []Import
}

// Export offers a subject filter to other accounts.
type Export struct {
	Subject  string
	Service  bool     // false: a stream
	Accounts []string // who may import it; empty: every account
	// Services only. ResponseType is "singleton" (default: one response
	// per request), "stream" or "chunked" (any number of responses within
	// ResponseThreshold, default 2m).
	ResponseType      string
	ResponseThreshold time.Duration
}

// Import brings an export of another account into this one.
type Import struct {
	Service bool
	Account string // the exporting account
	Subject string // in the exporter's subject space; an export must cover it
	// To is the subject in this account (default: Subject). A stream's
	// messages appear here; a service is requested here. Wildcards map by
	// position: the n-th "*" of To takes the token of the n-th "*" of
	// Subject (for a service, the other way round), ">" the rest.
	To string
}

func accountName(n string) string {
	if n == "" {
		return GlobalAccount
	}
	return n
}

// account is one subject space.
type account struct {
	name   string
	router *sublist
	ret    retainedSet // MQTT retained messages (retained.go)

	respMu     sync.Mutex // guards the fields below
	respPrefix string     // "_R_.<random>.": reply subjects handed to this exporter's responders
	respSub    *Subscription
	resps      map[string]*respEntry
	nextResp   uint64
	added      int // responses added since the last prune
}

// respEntry routes responses to one request made through a service
// import back to the requester's reply subject.
type respEntry struct {
	dst     *account
	to      string
	expires time.Time
	multi   bool // stream/chunked: any number until expires
}

type routeKind uint8

const (
	routeStream   routeKind = iota // exporter → importer, subject mapped
	routeService                   // importer → exporter, reply mapped
	routeResponse                  // exporter's reply subject → requester
)

// route is the Client of an internal subscription: delivering to it
// forwards the message into another account (Session.forward).
type route struct {
	kind  routeKind
	dst   *account // stream, service: where the message goes; response: the exporter owning the map
	src   *account // service: the importer (responses return there)
	xf    *transform
	ttl   time.Duration
	multi bool
}

var _ Client = (*route)(nil)

func (*route) Deliver(*Subscription, *Message) bool { return true }
func (*route) Wake()                                {}
func (*route) Close(error)                          {}

// accounts is the broker's account registry.
type accounts struct {
	mu       sync.Mutex // guards m and internal
	m        map[string]*account
	global   *account
	internal []internalSub // import subscriptions now installed
}

func (as *accounts) init(global *sublist) {
	as.global = &account{name: GlobalAccount, router: global}
	as.m = map[string]*account{GlobalAccount: as.global}
}

// lookup returns the account named n, created on first use. as.mu held.
func (as *accounts) lookup(n string) *account {
	n = accountName(n)
	a := as.m[n]
	if a == nil {
		a = &account{name: n, router: newSublist()}
		as.m[n] = a
	}
	return a
}

// account returns the account named n ("" is the global one).
func (b *Broker) account(n string) *account {
	if n == "" || n == GlobalAccount {
		return b.accs.global
	}
	b.accs.mu.Lock()
	defer b.accs.mu.Unlock()
	return b.accs.lookup(n)
}

// internalSub is an import's subscription and the account holding it;
// key identifies the import, so a reload keeps the ones it does not change.
type internalSub struct {
	sub  *Subscription
	home *account
	key  string
}

// installAccounts makes the import subscriptions those list declares:
// imports a reload leaves as they were keep their subscription (no
// message is lost or doubled meanwhile), new ones are added, dropped ones
// removed. New and Reload (under reloadMu); list was checked by
// Options.Validate.
func (b *Broker) installAccounts(list []Account) {
	byName := make(map[string]*Account, len(list))
	for i := range list {
		byName[accountName(list[i].Name)] = &list[i]
	}
	as := &b.accs
	as.mu.Lock()
	defer as.mu.Unlock()
	old := make(map[string]internalSub, len(as.internal))
	for _, in := range as.internal {
		old[in.key] = in
	}
	var next []internalSub
	for i := range list {
		imp := as.lookup(list[i].Name)
		for _, im := range list[i].Imports {
			exp := as.lookup(im.Account)
			ex := findExport(byName[exp.name], im.Service, im.Subject, imp.name)
			if ex == nil { // CheckAccounts refused it
				continue
			}
			key := fmt.Sprintf("%s\x00%v\x00%v\x00%s\x00%s", imp.name, im.Service, ex.ResponseThreshold, strings.ToLower(ex.ResponseType), fmt.Sprint(im))
			if in, ok := old[key]; ok {
				delete(old, key)
				next = append(next, in)
				continue
			}
			if in, ok := as.installImport(imp, exp, ex, im); ok {
				in.key = key
				next = append(next, in)
			}
		}
	}
	for _, in := range old {
		in.sub.closed.Store(true)
		_ = in.home.router.Remove(in.sub)
	}
	as.internal = next
}

// installImport subscribes one import's route. as.mu held.
func (as *accounts) installImport(imp, exp *account, ex *Export, im Import) (internalSub, bool) {
	to := im.To
	if to == "" {
		to = im.Subject
	}
	rt := &route{kind: routeStream, dst: imp}
	home, from, dst := exp, im.Subject, to
	if im.Service {
		rt.kind, rt.dst, rt.src = routeService, exp, imp
		home, from, dst = imp, to, im.Subject
		rt.ttl = ex.ResponseThreshold
		if rt.ttl == 0 {
			rt.ttl = DefaultResponseThreshold
		}
		rt.multi = ex.ResponseType != "" && !strings.EqualFold(ex.ResponseType, "singleton")
		as.responseSub(exp)
	}
	rt.xf, _ = newTransform(from, dst) // checked by CheckAccounts
	sub := &Subscription{Subject: []byte(from), Client: rt}
	if home.router.Insert(sub) != nil {
		return internalSub{}, false
	}
	return internalSub{sub: sub, home: home}, true
}

// responseSub makes sure exp listens on its response prefix, where its
// responders answer requests that came through service imports. as.mu
// held.
func (as *accounts) responseSub(exp *account) {
	exp.respMu.Lock()
	defer exp.respMu.Unlock()
	if exp.respSub != nil {
		return
	}
	var raw [5]byte
	_, _ = rand.Read(raw[:])
	exp.respPrefix = "_R_." + hex.EncodeToString(raw[:]) + "."
	exp.resps = make(map[string]*respEntry)
	exp.respSub = &Subscription{Subject: []byte(exp.respPrefix + ">"), Client: &route{kind: routeResponse, dst: exp}}
	_ = exp.router.Insert(exp.respSub)
}

// newResponse maps reply, the requester's reply subject in rt.src, to a
// fresh reply subject of the exporter, appended to dst. Publisher
// goroutine.
func (rt *route) newResponse(dst, reply []byte) []byte {
	e := rt.dst
	now := time.Now()
	e.respMu.Lock()
	defer e.respMu.Unlock()
	e.nextResp++
	dst = append(dst, e.respPrefix...)
	dst = strconv.AppendUint(dst, e.nextResp, 36)
	e.resps[string(dst)] = &respEntry{dst: rt.src, to: string(reply), expires: now.Add(rt.ttl), multi: rt.multi}
	if e.added++; e.added >= 1024 {
		for k, r := range e.resps {
			if now.After(r.expires) {
				delete(e.resps, k)
			}
		}
		e.added = 0
	}
	return dst
}

// takeResponse finds where a response published on subj goes; a
// singleton mapping is used up. Publisher goroutine.
func (a *account) takeResponse(subj []byte) (*account, string, bool) {
	a.respMu.Lock()
	defer a.respMu.Unlock()
	r := a.resps[string(subj)]
	if r == nil {
		return nil, "", false
	}
	if time.Now().After(r.expires) {
		delete(a.resps, string(subj))
		return nil, "", false
	}
	if !r.multi {
		delete(a.resps, string(subj))
	}
	return r.dst, r.to, true
}

// maxHops bounds forwarding between accounts (A imports from B, which
// imports the same subjects from A).
const maxHops = 4

// fwdFrame is a session's scratch for one level of forwarding, so a
// message crossing accounts does not allocate once the buffers grew.
type fwdFrame struct {
	m           Message
	subj, reply []byte
}

// forward delivers m, which matched rt's internal subscription, into
// rt's destination account: subject mapped, and for a service its reply
// mapped so the response finds its way back. It reports whether anything
// received it. Publisher goroutine of s.
func (s *Session) forward(batch *Batch, rt *route, m *Message) bool {
	if s.hops >= maxHops {
		return false
	}
	if s.fwd == nil {
		s.fwd = new([maxHops]fwdFrame)
	}
	f := &s.fwd[s.hops]
	dst, subj, reply := rt.dst, m.Subject, m.Reply
	if rt.kind == routeResponse {
		var to string
		var ok bool
		if dst, to, ok = rt.dst.takeResponse(m.Subject); !ok {
			return false
		}
		subj, reply = stringBytes(to), nil
	} else if rt.xf != nil {
		f.subj = rt.xf.apply(f.subj[:0], m.Subject)
		subj = f.subj
	}
	r := dst.router.Match(subj)
	if len(r.Psubs) == 0 && len(r.Qsubs) == 0 {
		return false
	}
	if rt.kind == routeService && len(reply) > 0 {
		f.reply = rt.newResponse(f.reply[:0], reply)
		reply = f.reply
	}
	f.m = Message{Subject: subj, Reply: reply, Header: m.Header, Payload: m.Payload,
		QoS: m.QoS, Retain: m.Retain, MQTT: m.MQTT, Ext: m.Ext,
		borrowed: true, ownPayload: m.PayloadStable()}
	if m.stable != nil { // a subscriber already copied the payload: share it
		f.m.Payload, f.m.ownPayload = m.stable.Payload, true
	}
	s.hops++
	n := s.deliverAll(batch, r, &f.m)
	s.hops--
	f.m = Message{} // drop references to the payload
	return n > 0
}
