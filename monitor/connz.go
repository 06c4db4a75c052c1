package monitor

import (
	"cmp"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// DefaultListSize is the page size of /connz and /subsz without limit.
const DefaultListSize = 1024

// Connz lists connections, with nats-server's /connz field names.
// num_connections counts the connections on this page, total all that
// match the query.
type Connz struct {
	ID       string      `json:"server_id"`
	Now      time.Time   `json:"now"`
	NumConns int         `json:"num_connections"`
	Total    int         `json:"total"`
	Offset   int         `json:"offset"`
	Limit    int         `json:"limit"`
	Conns    []*ConnInfo `json:"connections"`
}

// ConnInfo is one connection. Start, last_activity, uptime, idle, rtt,
// lang and version come from transports that keep them
// (broker.ConnStatser: NATS and MQTT, over TCP or WebSocket) and are left
// out otherwise. Without ConnStats (in-process broker.Local clients),
// out_msgs counts deliveries to the connection's current subscriptions
// and out_bytes and pending_bytes are 0. Stop and reason are set on
// closed connections only; their uptime and idle run to stop.
type ConnInfo struct {
	Cid            uint64      `json:"cid"`
	Kind           string      `json:"kind,omitempty"`
	Type           string      `json:"type,omitempty"`
	Transport      string      `json:"transport"`       // (busbar) nats, mqtt, websocket, inprocess
	ConnType       string      `json:"connection_type"` // (busbar) STANDARD, WEBSOCKET, MQTT, MQTT_WS, IN_PROCESS
	IP             string      `json:"ip"`
	Port           int         `json:"port"`
	Start          *time.Time  `json:"start,omitempty"`
	LastActivity   *time.Time  `json:"last_activity,omitempty"`
	Stop           *time.Time  `json:"stop,omitempty"`
	Reason         string      `json:"reason,omitempty"`
	RTT            string      `json:"rtt,omitempty"`
	Uptime         string      `json:"uptime,omitempty"`
	Idle           string      `json:"idle,omitempty"`
	Pending        int64       `json:"pending_bytes"`
	InMsgs         int64       `json:"in_msgs"`
	OutMsgs        int64       `json:"out_msgs"`
	InBytes        int64       `json:"in_bytes"`
	OutBytes       int64       `json:"out_bytes"`
	NumSubs        uint32      `json:"subscriptions"`
	Name           string      `json:"name,omitempty"`
	Lang           string      `json:"lang,omitempty"`
	Version        string      `json:"version,omitempty"`
	AuthorizedUser string      `json:"authorized_user,omitempty"`
	Account        string      `json:"account,omitempty"`
	Subs           []string    `json:"subscriptions_list,omitempty"`
	SubsDetail     []SubDetail `json:"subscriptions_list_detail,omitempty"`
	MQTTClient     string      `json:"mqtt_client,omitempty"`
}

// SubDetail is one subscription (connz subs=detail, subsz subs=1).
// sid is not known to the broker and is left out.
type SubDetail struct {
	Account string `json:"account,omitempty"`
	Subject string `json:"subject"`
	Queue   string `json:"qgroup,omitempty"`
	Sid     string `json:"sid,omitempty"`
	Msgs    int64  `json:"msgs"`
	Max     int64  `json:"max,omitempty"`
	Cid     uint64 `json:"cid"`
}

// ConnzOptions are the /connz query parameters.
type ConnzOptions struct {
	Sort       string // nats-server's: cid, start, subs, pending, msgs_to, msgs_from, bytes_to, bytes_from, last, idle, uptime, and for closed connections stop, reason; also in_msgs, out_msgs, in_bytes, out_bytes
	Auth       bool   // include authorized_user and account
	Subs       bool   // include subscriptions_list
	SubsDetail bool   // include subscriptions_list_detail
	Offset     int
	Limit      int    // 0: DefaultListSize
	CID        uint64 // only this connection
	State      string // open (default), closed (the last broker.Options.MaxClosedClients), all/any
	User       string // only this authorized user (needs Auth)
	Account    string // only this account (needs Auth)
	MQTTClient string // only this MQTT client id
	Transport  string // (busbar) only this transport label
}

// sortKeys maps a sort option to a descending key (ascending for cid).
var sortKeys = map[string]func(c *ConnInfo) int64{
	"subs":       func(c *ConnInfo) int64 { return int64(c.NumSubs) },
	"pending":    func(c *ConnInfo) int64 { return c.Pending },
	"msgs_to":    func(c *ConnInfo) int64 { return c.OutMsgs },
	"msgs_from":  func(c *ConnInfo) int64 { return c.InMsgs },
	"bytes_to":   func(c *ConnInfo) int64 { return c.OutBytes },
	"bytes_from": func(c *ConnInfo) int64 { return c.InBytes },
	"out_msgs":   func(c *ConnInfo) int64 { return c.OutMsgs },
	"in_msgs":    func(c *ConnInfo) int64 { return c.InMsgs },
	"out_bytes":  func(c *ConnInfo) int64 { return c.OutBytes },
	"in_bytes":   func(c *ConnInfo) int64 { return c.InBytes },
	"last":       func(c *ConnInfo) int64 { return unixNano(c.LastActivity) },
	"idle":       func(c *ConnInfo) int64 { return -unixNano(c.LastActivity) },
	"uptime":     func(c *ConnInfo) int64 { return -int64(c.Cid) },    // longest-running last, as nats-server
	"stop":       func(c *ConnInfo) int64 { return unixNano(c.Stop) }, // closed only: the latest first
}

func unixNano(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixNano()
}

// Connz lists the connections o asks for.
func (s *Server) Connz(o ConnzOptions) (*Connz, error) {
	closedOnly := strings.EqualFold(o.State, "closed")
	switch o.Sort {
	case "", "cid", "start":
	case "stop", "reason":
		if !closedOnly {
			return nil, fmt.Errorf("sort by %s only valid on closed connections", o.Sort)
		}
	default:
		if sortKeys[o.Sort] == nil {
			return nil, fmt.Errorf("invalid sorting option: %s", o.Sort)
		}
	}
	if !o.Auth && (o.User != "" || o.Account != "") {
		return nil, fmt.Errorf("filter by user or account only allowed with auth option")
	}
	switch strings.ToLower(o.State) {
	case "", "open", "all", "any", "closed":
	default:
		return nil, fmt.Errorf("Error decoding state for %s", o.State)
	}
	o.Offset = max(o.Offset, 0)
	if o.Limit <= 0 {
		o.Limit = DefaultListSize
	}
	now := time.Now().UTC()
	cz := &Connz{ID: s.b.ID(), Now: now, Offset: o.Offset, Limit: o.Limit, Conns: []*ConnInfo{}}
	var list []*ConnInfo
	if !closedOnly {
		list = s.openConns(&o, now)
	}
	if closedOnly || strings.EqualFold(o.State, "all") || strings.EqualFold(o.State, "any") {
		list = s.closedConns(list, &o)
	}
	switch key := sortKeys[o.Sort]; {
	case o.Sort == "reason":
		slices.SortStableFunc(list, func(x, y *ConnInfo) int { return cmp.Compare(x.Reason, y.Reason) })
	case key != nil:
		slices.SortStableFunc(list, func(x, y *ConnInfo) int { return cmp.Compare(key(y), key(x)) })
	} // else: by cid
	cz.Total = len(list)
	lo, hi := min(o.Offset, len(list)), min(o.Offset+o.Limit, len(list))
	cz.Conns = list[lo:hi]
	cz.NumConns = len(cz.Conns)
	return cz, nil
}

// openConns lists the open connections o asks for, by cid.
func (s *Server) openConns(o *ConnzOptions, now time.Time) []*ConnInfo {
	snap := s.b.Snapshot(o.Subs || o.SubsDetail)
	sessions := mqttSessions(&snap)
	list := make([]*ConnInfo, 0, len(snap.Conns))
	for i := range snap.Conns {
		c := &snap.Conns[i]
		if c.Detached || !o.matches(c) {
			continue
		}
		if isMQTT(c.Info.ConnType) {
			withSession(c, sessions[c.Info.Name])
		}
		list = append(list, connInfo(c, now, o))
	}
	return list
}

// closedConns adds the closed connections o asks for to open, keeping the
// list by cid. A connection that closed since open was listed is shown
// closed only.
func (s *Server) closedConns(open []*ConnInfo, o *ConnzOptions) []*ConnInfo {
	closed := s.b.ClosedConns()
	gone := make(map[uint64]bool, len(closed))
	list := make([]*ConnInfo, 0, len(open)+len(closed))
	for _, cc := range closed {
		c := cc.ConnSnapshot // a copy: the record is shared
		if !o.matches(&c) {
			continue
		}
		if !o.Subs && !o.SubsDetail {
			c.Subs = nil
		}
		ci := connInfo(&c, cc.Stop.UTC(), o)
		stop := cc.Stop.UTC()
		ci.Stop, ci.Reason = &stop, cc.Reason
		gone[ci.Cid] = true
		list = append(list, ci)
	}
	for _, ci := range open {
		if !gone[ci.Cid] {
			list = append(list, ci)
		}
	}
	slices.SortFunc(list, func(x, y *ConnInfo) int { return cmp.Compare(x.Cid, y.Cid) })
	return list
}

func (o *ConnzOptions) matches(c *broker.ConnSnapshot) bool {
	switch {
	case o.CID != 0 && c.Info.ID != o.CID:
		return false
	case o.Account != "" && c.Account != o.Account:
		return false
	case o.User != "" && (c.Info.Identity == nil || c.Info.Identity.Name != o.User):
		return false
	case o.MQTTClient != "" && (!isMQTT(c.Info.ConnType) || c.Info.Name != o.MQTTClient):
		return false
	case o.Transport != "" && transportOf(c.Info.ConnType, c.Info.Transport) != o.Transport:
		return false
	}
	return true
}

// mqttSessions indexes the MQTT sessions (detached: they hold an MQTT
// client's subscriptions across its connections) by client id.
func mqttSessions(snap *broker.Snapshot) map[string]*broker.ConnSnapshot {
	m := make(map[string]*broker.ConnSnapshot)
	for i := range snap.Conns {
		if c := &snap.Conns[i]; c.Detached && isMQTT(c.Info.ConnType) {
			m[c.Info.Name] = c
		}
	}
	return m
}

// withSession shows an MQTT connection with its session's subscriptions
// and deliveries, as nats-server lists an MQTT client's.
func withSession(c, sess *broker.ConnSnapshot) {
	if sess == nil {
		return
	}
	c.NumSubs += sess.NumSubs
	c.Subs = append(c.Subs, sess.Subs...)
	if c.Stats == nil {
		c.OutMsgs += sess.OutMsgs
	}
}

func isMQTT(ct auth.ConnType) bool { return ct == auth.ConnMQTT || ct == auth.ConnMQTTWS }

// clientType is nats-server's connection "type": mqtt for MQTT over any
// transport, websocket for NATS over WebSocket, else nats.
func clientType(ct auth.ConnType) string {
	switch ct {
	case auth.ConnMQTT, auth.ConnMQTTWS:
		return "mqtt"
	case auth.ConnWebSocket:
		return "websocket"
	}
	return "nats"
}

func connInfo(c *broker.ConnSnapshot, now time.Time, o *ConnzOptions) *ConnInfo {
	ci := &ConnInfo{
		Cid: c.Info.ID, Kind: "Client", Type: clientType(c.Info.ConnType),
		Transport: transportOf(c.Info.ConnType, c.Info.Transport), ConnType: c.Info.ConnType.String(),
		InMsgs: c.InMsgs, InBytes: c.InBytes, OutMsgs: c.OutMsgs, OutBytes: c.OutBytes,
		NumSubs: uint32(c.NumSubs), Name: c.Info.Name,
	}
	ci.IP, ci.Port = splitAddr(c.Info.Remote)
	if isMQTT(c.Info.ConnType) {
		ci.MQTTClient = c.Info.Name
	}
	if st := c.Stats; st != nil {
		ci.Pending, ci.Lang, ci.Version = st.Pending, st.Lang, st.Version
		if !st.Start.IsZero() {
			t := st.Start.UTC()
			ci.Start, ci.Uptime = &t, uptime(now.Sub(t))
		}
		if !st.LastActivity.IsZero() {
			t := st.LastActivity.UTC()
			ci.LastActivity, ci.Idle = &t, uptime(now.Sub(t))
		}
		if st.RTT > 0 {
			ci.RTT = st.RTT.String()
		}
	}
	if o.Auth {
		if id := c.Info.Identity; id != nil {
			ci.AuthorizedUser = id.Name
		}
		if c.Account != broker.GlobalAccount {
			ci.Account = c.Account
		}
	}
	for _, sub := range c.Subs {
		if o.SubsDetail {
			ci.SubsDetail = append(ci.SubsDetail, SubDetail{Subject: sub.Subject, Queue: sub.Queue, Msgs: sub.Delivered, Max: sub.Max, Cid: c.Info.ID})
		} else {
			ci.Subs = append(ci.Subs, sub.Subject)
		}
	}
	return ci
}

// splitAddr splits "host:port"; anything else ("in-process") gives
// nothing.
func splitAddr(a string) (string, int) {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0
	}
	port, _ := strconv.Atoi(p)
	return h, port
}

func (s *Server) handleConnz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var o ConnzOptions
	var err error
	o.Sort, o.State = q.Get("sort"), q.Get("state")
	o.User, o.Account, o.MQTTClient, o.Transport = q.Get("user"), q.Get("acc"), q.Get("mqtt_client"), q.Get("transport")
	if strings.EqualFold(q.Get("subs"), "detail") {
		o.SubsDetail = true
	} else if o.Subs, err = queryBool(q, "subs"); err != nil {
		badRequest(w, err.Error())
		return
	}
	if o.Auth, err = queryBool(q, "auth"); err == nil {
		if o.Offset, err = queryInt(q, "offset"); err == nil {
			if o.Limit, err = queryInt(q, "limit"); err == nil {
				o.CID, err = queryUint(q, "cid")
			}
		}
	}
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	cz, err := s.Connz(o)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, cz)
}

// Query decoding with nats-server's error texts.

func queryBool(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("Error decoding boolean for '%s': %v", name, err)
	}
	return b, nil
}

func queryInt(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("Error decoding int for '%s': %v", name, err)
	}
	return n, nil
}

func queryUint(q url.Values, name string) (uint64, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Error decoding uint64 for '%s': %v", name, err)
	}
	return n, nil
}
