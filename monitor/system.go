package monitor

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// The system account: nats-server's requests on $SYS.REQ.SERVER.* and
// $SYS.REQ.USER.INFO, answered with the monitoring JSON, and its
// connect and disconnect advisories, so the NATS tools (`nats server
// list`, `info`, `ping`, `report connections`) work against busbar.

// DefaultSystemAccount is the system account's name when the
// configuration names none, as nats-server has it.
const DefaultSystemAccount = "$SYS"

// SystemEndpoints are the endpoints the system account answers, on
// $SYS.REQ.SERVER.PING.<endpoint> (every server) and
// $SYS.REQ.SERVER.<server id>.<endpoint> (this one). $SYS.REQ.SERVER.PING
// alone is STATSZ.
var SystemEndpoints = []string{"STATSZ", "IDZ", "VARZ", "CONNZ", "SUBSZ", "HEALTHZ", "LEAFZ", "ACCOUNTZ"}

// System is the system account's responder: a broker.Service (Start it
// with the transports) that subscribes, through in-process clients of
// the broker's own (broker.Internal), to the request subjects in the
// system account, and publishes the advisories there. Clients reach it
// by logging in as a user of that account.
type System struct {
	mon     *Server
	account string
	seq     atomic.Uint64 // ServerInfo.seq of what it sends

	mu      sync.Mutex    // guards the fields below
	sys     *broker.Local // in the system account: answers, advisories
	locals  []*broker.Local
	stop    func() // WatchConns
	done    chan struct{}
	ready   chan struct{} // closed once the subscriptions are in place, or Serve failed
	readyMu sync.Once
	closed  bool
	dropped int64 // advisories dropped: the queue was full
}

var _ broker.Service = (*System)(nil)

// NewSystem returns the system account responder of mon's broker for
// account (DefaultSystemAccount when empty).
func NewSystem(mon *Server, account string) *System {
	if account == "" {
		account = DefaultSystemAccount
	}
	return &System{mon: mon, account: account, done: make(chan struct{}), ready: make(chan struct{})}
}

// Name is "system".
func (s *System) Name() string { return "system" }

// Account is the system account's name.
func (s *System) Account() string { return s.account }

// KeepInLameDuck keeps the responder up in lame duck mode, as
// monitoring stays (broker.LameDuckKeeper).
func (s *System) KeepInLameDuck() bool { return true }

// Serve subscribes and answers until Close or the broker's shutdown.
func (s *System) Serve(ctx context.Context, b *broker.Broker) error {
	defer s.readyMu.Do(func() { close(s.ready) })
	events := make(chan broker.ConnEvent, 1024)
	if err := s.subscribe(b); err != nil {
		s.closeLocals()
		return err
	}
	stop := b.WatchConns(func(ev broker.ConnEvent) {
		select {
		case events <- ev:
		default: // never block a connecting client: the advisory is lost
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	})
	s.mu.Lock()
	s.stop = stop
	s.mu.Unlock()
	s.readyMu.Do(func() { close(s.ready) })
	defer s.closeLocals()
	for {
		select {
		case ev := <-events:
			s.advise(ev)
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		}
	}
}

// Ready is closed once Serve has subscribed: requests sent after it are
// answered.
func (s *System) Ready() <-chan struct{} { return s.ready }

// Close stops answering. Safe to call more than once.
func (s *System) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	return nil
}

func (s *System) closeLocals() {
	s.mu.Lock()
	locals, stop := s.locals, s.stop
	s.locals, s.stop, s.sys = nil, nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	for _, l := range locals {
		l.Close(nil)
	}
}

// subscribe sets up the request subjects: the server requests in the
// system account, $SYS.REQ.USER.INFO there and in every other declared
// account (nats-server imports it into each) and the global one.
func (s *System) subscribe(b *broker.Broker) error {
	sys, err := s.internal(b, s.account)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.sys = sys
	s.mu.Unlock()
	id := b.ID()
	add := func(subj string, h func(*broker.Message) any) error {
		_, err := sys.Subscribe(subj, func(m *broker.Message) { s.respond(sys, m, h) })
		return err
	}
	if err := add("$SYS.REQ.SERVER.PING", s.statsz); err != nil {
		return err
	}
	for _, ep := range SystemEndpoints {
		h := s.endpoint(ep)
		for _, subj := range []string{"$SYS.REQ.SERVER.PING." + ep, "$SYS.REQ.SERVER." + id + "." + ep} {
			if err := add(subj, h); err != nil {
				return err
			}
		}
	}
	accounts := []string{s.account, broker.GlobalAccount}
	for _, a := range b.Options().Accounts {
		if a.Name != s.account && a.Name != broker.GlobalAccount {
			accounts = append(accounts, a.Name)
		}
	}
	for i, acc := range accounts {
		l := sys
		if i > 0 {
			if l, err = s.internal(b, acc); err != nil {
				return err
			}
		}
		if _, err := l.Subscribe("$SYS.REQ.USER.INFO", func(m *broker.Message) { s.respond(l, m, s.userInfo) }); err != nil {
			return err
		}
	}
	return nil
}

func (s *System) internal(b *broker.Broker, account string) (*broker.Local, error) {
	l, err := b.Internal("system", account)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.locals = append(s.locals, l)
	s.mu.Unlock()
	return l, nil
}

// respond answers a request with h's value as JSON; h returning nil
// means "not for this server" (a filter did not match): no answer.
func (s *System) respond(l *broker.Local, m *broker.Message, h func(*broker.Message) any) {
	if len(m.Reply) == 0 {
		return
	}
	v := h(m)
	if v == nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		data, _ = json.Marshal(apiResponse{Server: s.serverInfo(), Error: &apiError{Code: 500, Description: err.Error()}})
	}
	_ = l.Publish(string(m.Reply), data)
}

// ServerInfo identifies the server in every answer and advisory, with
// nats-server's field names.
type ServerInfo struct {
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	ID        string    `json:"id"`
	Version   string    `json:"ver"`
	JetStream bool      `json:"jetstream"`
	Flags     uint64    `json:"flags"`
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
}

func (s *System) serverInfo() *ServerInfo {
	b := s.mon.b
	si := &ServerInfo{Name: b.Options().ServerName, ID: b.ID(), Version: broker.Version, Seq: s.seq.Add(1), Time: time.Now().UTC()}
	if a := s.mon.listenAddr(TransportNATS); a != nil {
		si.Host = a.IP.String()
	}
	return si
}

// apiResponse is nats-server's ServerAPIResponse.
type apiResponse struct {
	Server *ServerInfo `json:"server"`
	Data   any         `json:"data,omitempty"`
	Error  *apiError   `json:"error,omitempty"`
}

type apiError struct {
	Code        int    `json:"code"`
	Description string `json:"description,omitempty"`
}

// eventFilter is nats-server's EventFilterOptions: a request names the
// servers that should answer; the others stay silent.
type eventFilter struct {
	Name       string   `json:"server_name,omitempty"`
	Cluster    string   `json:"cluster,omitempty"`
	Host       string   `json:"host,omitempty"`
	Tags       []string `json:"tags,omitempty"`
	Domain     string   `json:"domain,omitempty"`
	ExactMatch bool     `json:"exact_match,omitempty"`
}

// skip reports whether the request is for other servers. busbar has no
// cluster, tags or JetStream domain, so a filter on one of those never
// matches it.
func (f *eventFilter) skip(si *ServerInfo) bool {
	match := func(have, want string) bool {
		if f.ExactMatch {
			return have == want
		}
		return strings.Contains(have, want)
	}
	switch {
	case f.Name != "" && !match(si.Name, f.Name),
		f.Host != "" && !match(si.Host, f.Host),
		f.Cluster != "", len(f.Tags) > 0, f.Domain != "":
		return true
	}
	return false
}

// decode reads the request's options into opts, whose eventFilter is f.
// It returns the answer to send instead (a 400 error, or nil to stay
// silent for a filter that excludes this server) and whether to go on.
func (s *System) decode(m *broker.Message, opts any, f *eventFilter, si *ServerInfo) (any, bool) {
	if len(m.Payload) == 0 {
		return nil, true
	}
	if err := json.Unmarshal(m.Payload, opts); err != nil {
		return apiResponse{Server: si, Error: &apiError{Code: 400, Description: err.Error()}}, false
	}
	if f.skip(si) {
		return nil, false
	}
	return nil, true
}

// ServerStatsMsg is the STATSZ answer (and $SYS.REQ.SERVER.PING's).
type ServerStatsMsg struct {
	Server *ServerInfo  `json:"server"`
	Stats  *ServerStats `json:"statsz"`
}

// ServerStats are the server's figures, as nats-server's statsz names them.
type ServerStats struct {
	Start            time.Time `json:"start"`
	Mem              int64     `json:"mem"`
	Cores            int       `json:"cores"`
	CPU              float64   `json:"cpu"`
	Connections      int       `json:"connections"`
	TotalConnections uint64    `json:"total_connections"`
	ActiveAccounts   int       `json:"active_accounts"`
	NumSubs          uint32    `json:"subscriptions"`
	Sent             DataStats `json:"sent"`
	Received         DataStats `json:"received"`
	SlowConsumers    int64     `json:"slow_consumers"`
	ActiveServers    int       `json:"active_servers,omitempty"`
}

// DataStats counts messages and bytes.
type DataStats struct {
	Msgs  int64 `json:"msgs"`
	Bytes int64 `json:"bytes"`
}

func (s *System) statsz(m *broker.Message) any {
	si := s.serverInfo()
	var f eventFilter
	if v, ok := s.decode(m, &f, &f, si); !ok {
		return v
	}
	v := s.mon.Varz()
	accounts := map[string]bool{}
	for _, c := range s.mon.b.Snapshot(false).Conns {
		if !c.Detached {
			accounts[c.Account] = true
		}
	}
	return ServerStatsMsg{Server: si, Stats: &ServerStats{
		Start: v.Start, Mem: v.Mem, Cores: runtime.NumCPU(), Connections: v.Connections,
		TotalConnections: v.TotalConnections, ActiveAccounts: len(accounts), NumSubs: v.Subscriptions,
		Sent: DataStats{Msgs: v.OutMsgs, Bytes: v.OutBytes}, Received: DataStats{Msgs: v.InMsgs, Bytes: v.InBytes},
		SlowConsumers: v.SlowConsumers, ActiveServers: 1,
	}}
}

// endpoint returns the handler of one $SYS.REQ.SERVER endpoint.
func (s *System) endpoint(name string) func(*broker.Message) any {
	switch name {
	case "STATSZ":
		return s.statsz
	case "IDZ":
		return func(*broker.Message) any {
			si := s.serverInfo()
			return struct {
				Name string `json:"name"`
				Host string `json:"host"`
				ID   string `json:"id"`
			}{si.Name, si.Host, si.ID}
		}
	case "CONNZ":
		return s.connz
	case "SUBSZ":
		return s.subsz
	case "LEAFZ":
		return s.simple(func() (any, error) { return s.mon.leafz(), nil })
	case "HEALTHZ":
		return s.simple(func() (any, error) { return healthStatus(s.mon.Healthz()), nil })
	case "ACCOUNTZ":
		return s.simple(func() (any, error) { return s.accountz(), nil })
	}
	return s.simple(func() (any, error) { return s.mon.Varz(), nil }) // VARZ
}

// simple answers an endpoint whose only options are the filter.
func (s *System) simple(f func() (any, error)) func(*broker.Message) any {
	return func(m *broker.Message) any {
		si := s.serverInfo()
		var opts eventFilter
		if v, ok := s.decode(m, &opts, &opts, si); !ok {
			return v
		}
		return result(si, f)
	}
}

func result(si *ServerInfo, f func() (any, error)) any {
	v, err := f()
	if err != nil {
		return apiResponse{Server: si, Error: &apiError{Code: 500, Description: err.Error()}}
	}
	return apiResponse{Server: si, Data: v}
}

// connzRequest is nats-server's ConnzEventOptions.
type connzRequest struct {
	Sort          string `json:"sort"`
	Auth          bool   `json:"auth"`
	Subs          bool   `json:"subscriptions"`
	SubsDetail    bool   `json:"subscriptions_detail"`
	Offset        int    `json:"offset"`
	Limit         int    `json:"limit"`
	CID           uint64 `json:"cid"`
	MQTTClient    string `json:"mqtt_client"`
	State         int    `json:"state"` // 0 open, 1 closed, 2 all
	User          string `json:"user"`
	Account       string `json:"acc"`
	FilterSubject string `json:"filter_subject"`
	eventFilter
}

func (s *System) connz(m *broker.Message) any {
	si := s.serverInfo()
	var r connzRequest
	if v, ok := s.decode(m, &r, &r.eventFilter, si); !ok {
		return v
	}
	o := ConnzOptions{Sort: r.Sort, Auth: r.Auth, Subs: r.Subs || r.SubsDetail, SubsDetail: r.SubsDetail,
		Offset: r.Offset, Limit: r.Limit, CID: r.CID, User: r.User, Account: r.Account, MQTTClient: r.MQTTClient}
	switch r.State {
	case 1:
		o.State = "closed"
	case 2:
		o.State = "all"
	}
	return result(si, func() (any, error) { return s.mon.Connz(o) })
}

// subszRequest is nats-server's SubszEventOptions.
type subszRequest struct {
	Offset  int    `json:"offset"`
	Limit   int    `json:"limit"`
	Subs    bool   `json:"subscriptions"`
	Account string `json:"account,omitempty"`
	Test    string `json:"test,omitempty"`
	eventFilter
}

func (s *System) subsz(m *broker.Message) any {
	si := s.serverInfo()
	var r subszRequest
	if v, ok := s.decode(m, &r, &r.eventFilter, si); !ok {
		return v
	}
	o := SubszOptions{Subs: r.Subs, Offset: r.Offset, Limit: r.Limit, Account: r.Account, Test: r.Test}
	return result(si, func() (any, error) { return s.mon.Subsz(o) })
}

// Accountz lists the accounts, with nats-server's /accountz field names.
type Accountz struct {
	ID            string    `json:"server_id"`
	Now           time.Time `json:"now"`
	SystemAccount string    `json:"system_account,omitempty"`
	Accounts      []string  `json:"accounts"`
}

func (s *System) accountz() *Accountz {
	seen := map[string]bool{broker.GlobalAccount: true, s.account: true}
	az := &Accountz{ID: s.mon.b.ID(), Now: time.Now().UTC(), SystemAccount: s.account, Accounts: []string{broker.GlobalAccount, s.account}}
	for _, a := range s.mon.b.Options().Accounts {
		if !seen[a.Name] {
			seen[a.Name] = true
			az.Accounts = append(az.Accounts, a.Name)
		}
	}
	for _, c := range s.mon.b.Snapshot(false).Conns {
		if !seen[c.Account] {
			seen[c.Account] = true
			az.Accounts = append(az.Accounts, c.Account)
		}
	}
	return az
}
