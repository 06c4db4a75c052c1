package broker

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/busbar/busbar/subject"
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

// AccountError is one problem with the declared accounts, located by
// account and export or import index (-1 where it is not about one).
type AccountError struct {
	Account        string
	Export, Import int
	Msg            string
}

func (e *AccountError) Error() string {
	switch {
	case e.Import >= 0:
		return fmt.Sprintf("account %s: import %d: %s", e.Account, e.Import+1, e.Msg)
	case e.Export >= 0:
		return fmt.Sprintf("account %s: export %d: %s", e.Account, e.Export+1, e.Msg)
	}
	return fmt.Sprintf("account %s: %s", e.Account, e.Msg)
}

func accountName(n string) string {
	if n == "" {
		return GlobalAccount
	}
	return n
}

// CheckAccounts reports every problem with list: bad subjects, imports
// of accounts or subjects nobody exports (or exports to someone else),
// wildcard mappings that cannot work.
func CheckAccounts(list []Account) []*AccountError {
	var errs []*AccountError
	byName := make(map[string]*Account, len(list))
	for i := range list {
		a := &list[i]
		n := accountName(a.Name)
		if byName[n] != nil {
			errs = append(errs, &AccountError{Account: n, Export: -1, Import: -1, Msg: "declared more than once"})
		}
		byName[n] = a
		for j, ex := range a.Exports {
			bad := func(f string, args ...any) {
				errs = append(errs, &AccountError{Account: n, Export: j, Import: -1, Msg: fmt.Sprintf(f, args...)})
			}
			switch rt := strings.ToLower(ex.ResponseType); {
			case !subject.ValidFilter([]byte(ex.Subject)):
				bad("%q is not a valid subject", ex.Subject)
			case rt != "" && rt != "singleton" && rt != "stream" && rt != "chunked":
				bad("response_type %q is not singleton, stream or chunked", ex.ResponseType)
			case !ex.Service && (rt != "" || ex.ResponseThreshold != 0):
				bad("a stream export has no response type or threshold")
			case ex.ResponseThreshold < 0:
				bad("response_threshold must not be negative")
			}
		}
	}
	for i := range list {
		a := &list[i]
		n := accountName(a.Name)
		for j, im := range a.Imports {
			if msg := checkImport(byName, n, im); msg != "" {
				errs = append(errs, &AccountError{Account: n, Export: -1, Import: j, Msg: msg})
			}
		}
	}
	if len(errs) == 0 {
		errs = checkCycles(list)
	}
	return errs
}

// flow is one import seen as the way messages go: published in from on a
// subject fromSubj matches, they appear in to as toSubj.
type flow struct {
	from, to         string
	fromSubj, toSubj string
	account, index   int // the import, for the error
}

// checkCycles refuses imports along which a message could come back to an
// account it left (nats-server: "import forms a cycle").
func checkCycles(list []Account) []*AccountError {
	var flows []flow
	for i := range list {
		n := accountName(list[i].Name)
		for j, im := range list[i].Imports {
			to := im.To
			if to == "" {
				to = im.Subject
			}
			f := flow{from: accountName(im.Account), to: n, fromSubj: im.Subject, toSubj: to, account: i, index: j}
			if im.Service {
				f.from, f.to, f.fromSubj, f.toSubj = n, f.from, to, im.Subject
			}
			flows = append(flows, f)
		}
	}
	var errs []*AccountError
	for _, f := range flows {
		if reaches(flows, f.to, f.toSubj, f.from, len(flows)) {
			errs = append(errs, &AccountError{Account: accountName(list[f.account].Name), Export: -1, Import: f.index,
				Msg: fmt.Sprintf("forms a cycle: messages on %q can come back to account %s", f.fromSubj, f.from)})
		}
	}
	return errs
}

// reaches reports whether a message in account acc on subjects subj
// matches can flow on to account target. depth bounds the walk.
func reaches(flows []flow, acc, subj, target string, depth int) bool {
	if depth == 0 {
		return false
	}
	for _, f := range flows {
		if f.from != acc || !filtersOverlap(f.fromSubj, subj) {
			continue
		}
		if f.to == target || reaches(flows, f.to, f.toSubj, target, depth-1) {
			return true
		}
	}
	return false
}

// filtersOverlap reports whether some subject matches both filters.
func filtersOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(at) && i < len(bt); i++ {
		switch {
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] == "*" || bt[i] == "*" || at[i] == bt[i]:
		default:
			return false
		}
	}
	return len(at) == len(bt)
}

// checkImport returns why im, an import of account n, cannot work, or "".
func checkImport(byName map[string]*Account, n string, im Import) string {
	kind := "stream"
	if im.Service {
		kind = "service"
	}
	src := accountName(im.Account)
	to := im.To
	if to == "" {
		to = im.Subject
	}
	switch {
	case im.Account == "":
		return "the exporting account is missing"
	case src == n:
		return "an account cannot import from itself"
	case !subject.ValidFilter([]byte(im.Subject)):
		return fmt.Sprintf("%q is not a valid subject", im.Subject)
	case !subject.ValidFilter([]byte(to)):
		return fmt.Sprintf("to %q is not a valid subject", to)
	case byName[src] == nil:
		return fmt.Sprintf("account %q is not declared (it must export %q)", im.Account, im.Subject)
	}
	if findExport(byName[src], im.Service, im.Subject, n) == nil {
		return fmt.Sprintf("account %s exports no %s covering %q to %s", src, kind, im.Subject, n)
	}
	from, dst := im.Subject, to
	if im.Service {
		from, dst = to, im.Subject
	}
	if _, err := newTransform(from, dst); err != nil {
		return err.Error()
	}
	return ""
}

// findExport returns a's export of the kind asked that covers filter and
// that importer may import, or nil.
func findExport(a *Account, service bool, filter, importer string) *Export {
	for i := range a.Exports {
		ex := &a.Exports[i]
		if ex.Service != service || !filterCovers(ex.Subject, filter) {
			continue
		}
		if len(ex.Accounts) == 0 || slices.ContainsFunc(ex.Accounts, func(s string) bool { return accountName(s) == importer }) {
			return ex
		}
	}
	return nil
}

// filterCovers reports whether every subject filter f matches is matched
// by e, token by token.
func filterCovers(e, f string) bool {
	et, ft := strings.Split(e, "."), strings.Split(f, ".")
	for i, t := range et {
		switch {
		case t == ">":
			return i < len(ft)
		case i >= len(ft):
			return false
		case ft[i] == ">":
			return false
		case t == "*":
		case t != ft[i]:
			return false
		}
	}
	return len(et) == len(ft)
}

// transform maps subjects matching from onto to, wildcards by position.
// nil means the identity.
type transform struct {
	from []string
	to   []string // literal tokens; "*" and ">" take the captures
}

const maxCaptures = 16

func newTransform(from, to string) (*transform, error) {
	if from == to {
		return nil, nil
	}
	t := &transform{from: strings.Split(from, "."), to: strings.Split(to, ".")}
	fstars, tstars := strings.Count("."+from+".", ".*."), 0
	for i, tok := range t.to {
		switch tok {
		case "*":
			tstars++
		case ">":
			if t.from[len(t.from)-1] != ">" || i != len(t.to)-1 {
				return nil, fmt.Errorf("cannot map %q to %q: \">\" needs \">\" in %q", from, to, from)
			}
		}
	}
	if tstars > fstars || fstars > maxCaptures {
		return nil, fmt.Errorf("cannot map %q to %q: it has more \"*\" than %q", from, to, from)
	}
	return t, nil
}

// apply appends the mapping of subj (a literal subject from matches) to
// dst. Publisher goroutine; no allocation once dst has grown.
func (t *transform) apply(dst, subj []byte) []byte {
	var caps [maxCaptures][]byte
	var rest []byte
	n := 0
	for i, ft := range t.from {
		tok, r, _ := bytes.Cut(subj, []byte{'.'})
		switch ft {
		case "*":
			caps[n] = tok
			n++
		case ">":
			rest = subj
		}
		if ft == ">" || i == len(t.from)-1 {
			break
		}
		subj = r
	}
	n = 0
	for i, tok := range t.to {
		if i > 0 {
			dst = append(dst, '.')
		}
		switch tok {
		case "*":
			dst = append(dst, caps[n]...)
			n++
		case ">":
			dst = append(dst, rest...)
		default:
			dst = append(dst, tok...)
		}
	}
	return dst
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
