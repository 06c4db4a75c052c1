package monitor

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"net"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// UserInfo answers $SYS.REQ.USER.INFO: who the requesting connection is,
// with nats-server's field names.
type UserInfo struct {
	User        string          `json:"user"`
	Account     string          `json:"account"`
	Permissions *UserPermission `json:"permissions,omitempty"`
	Expires     time.Duration   `json:"expires,omitempty"`
}

// UserPermission is a user's permissions as nats-server writes them.
type UserPermission struct {
	Publish   *SubjectPermission  `json:"publish,omitempty"`
	Subscribe *SubjectPermission  `json:"subscribe,omitempty"`
	Response  *ResponsePermission `json:"responses,omitempty"`
}

// SubjectPermission is one direction's allow and deny lists.
type SubjectPermission struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// ResponsePermission is allow_responses.
type ResponsePermission struct {
	Max     int           `json:"max"`
	Expires time.Duration `json:"ttl"`
}

func userPermission(p *auth.Permissions) *UserPermission {
	if p == nil {
		return nil
	}
	sp := func(s *auth.SubjectPermission) *SubjectPermission {
		if s == nil {
			return nil
		}
		return &SubjectPermission{Allow: s.Allow, Deny: s.Deny}
	}
	up := &UserPermission{Publish: sp(p.Publish), Subscribe: sp(p.Subscribe)}
	if r := p.ResponseLimits(); r != nil {
		up.Response = &ResponsePermission{Max: r.Max, Expires: r.Expires}
	}
	return up
}

// userInfo answers for the connection that published the request.
func (s *System) userInfo(m *broker.Message) any {
	si := s.serverInfo()
	origin := m.Origin()
	for _, c := range s.mon.b.Snapshot(false).Conns {
		if c.Client != origin || origin == nil {
			continue
		}
		ui := UserInfo{Account: c.Account}
		if id := c.Info.Identity; id != nil {
			ui.User, ui.Permissions = id.Name, userPermission(id.Perms)
			if !id.Expires.IsZero() {
				ui.Expires = time.Until(id.Expires)
			}
		}
		return apiResponse{Server: si, Data: ui}
	}
	return apiResponse{Server: si, Error: &apiError{Code: 400, Description: "requesting connection not found"}}
}

// Advisory types, as nats-server names them.
const (
	ConnectEventType    = "io.nats.server.advisory.v1.client_connect"
	DisconnectEventType = "io.nats.server.advisory.v1.client_disconnect"
)

// ConnectEvent is published on $SYS.ACCOUNT.<account>.CONNECT when a
// client of that account logs in; DisconnectEvent on
// $SYS.ACCOUNT.<account>.DISCONNECT when it leaves. As nats-server,
// clients of the global account are not announced.
type ConnectEvent struct {
	Type   string      `json:"type"`
	ID     string      `json:"id"`
	Time   time.Time   `json:"timestamp"`
	Server *ServerInfo `json:"server"`
	Client EventClient `json:"client"`
}

// DisconnectEvent is a client gone, with what it sent and received.
type DisconnectEvent struct {
	ConnectEvent
	Sent     DataStats `json:"sent"`
	Received DataStats `json:"received"`
	Reason   string    `json:"reason"`
}

// EventClient describes the client of an advisory.
type EventClient struct {
	Start      *time.Time `json:"start,omitempty"`
	Stop       *time.Time `json:"stop,omitempty"`
	Host       string     `json:"host,omitempty"`
	ID         uint64     `json:"id,omitempty"`
	Account    string     `json:"acc,omitempty"`
	User       string     `json:"user,omitempty"`
	Name       string     `json:"name,omitempty"`
	Lang       string     `json:"lang,omitempty"`
	Version    string     `json:"ver,omitempty"`
	RTT        int64      `json:"rtt,omitempty"` // nanoseconds
	Kind       string     `json:"kind,omitempty"`
	ClientType string     `json:"client_type,omitempty"`
}

// advise publishes the advisory of one connection event.
func (s *System) advise(ev broker.ConnEvent) {
	s.mu.Lock()
	sys := s.sys
	s.mu.Unlock()
	snap := ev.Session.ConnSnapshot()
	if ev.Closed != nil {
		snap = ev.Closed.ConnSnapshot
	}
	if sys == nil || snap.Account == "" || snap.Account == broker.GlobalAccount {
		return
	}
	ce := ConnectEvent{Type: ConnectEventType, ID: eventID(), Time: time.Now().UTC(), Server: s.serverInfo(), Client: eventClient(&snap)}
	if ev.Closed == nil {
		_ = sys.Publish("$SYS.ACCOUNT."+snap.Account+".CONNECT", mustJSON(ce))
		return
	}
	stop := ev.Closed.Stop.UTC()
	ce.Type, ce.Client.Stop = DisconnectEventType, &stop
	de := DisconnectEvent{ConnectEvent: ce, Reason: ev.Closed.Reason,
		Sent: DataStats{Msgs: snap.InMsgs, Bytes: snap.InBytes}, Received: DataStats{Msgs: snap.OutMsgs, Bytes: snap.OutBytes}}
	_ = sys.Publish("$SYS.ACCOUNT."+snap.Account+".DISCONNECT", mustJSON(de))
}

func eventClient(c *broker.ConnSnapshot) EventClient {
	ec := EventClient{ID: c.Info.ID, Account: c.Account, Name: c.Info.Name, Kind: "Client", ClientType: clientType(c.Info.ConnType)}
	if h, _, err := net.SplitHostPort(c.Info.Remote); err == nil {
		ec.Host = h
	}
	if id := c.Info.Identity; id != nil {
		ec.User = id.Name
	}
	if st := c.Stats; st != nil {
		start := st.Start.UTC()
		ec.Start, ec.Lang, ec.Version, ec.RTT = &start, st.Lang, st.Version, int64(st.RTT)
	}
	return ec
}

// eventID is a random advisory id.
func eventID() string {
	var raw [15]byte
	_, _ = rand.Read(raw[:])
	return base32.StdEncoding.EncodeToString(raw[:])
}

// mustJSON encodes v, whose types always encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("monitor: " + err.Error()) // a bug: every advisory type encodes
	}
	return b
}
