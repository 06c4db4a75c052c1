package monitor

import (
	"net"
	"sort"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// Transport labels: the listener a connection came through. NATS and MQTT
// over WebSocket are both "websocket"; nats.go's InProcessServer and
// broker.Local clients are "inprocess".
const (
	TransportNATS      = "nats"
	TransportMQTT      = "mqtt"
	TransportWebSocket = "websocket"
	TransportInProcess = "inprocess"
)

// transportOf names the listener kind of a connection of type ct that
// registered as transport.
func transportOf(ct auth.ConnType, transport string) string {
	switch ct {
	case auth.ConnStandard:
		return TransportNATS
	case auth.ConnMQTT:
		return TransportMQTT
	case auth.ConnWebSocket, auth.ConnMQTTWS:
		return TransportWebSocket
	case auth.ConnInProcess:
		return TransportInProcess
	}
	if transport != "" {
		return transport
	}
	return "unknown"
}

// transportFigures are one transport's connections and counters.
type transportFigures struct {
	Conns int `json:"connections"`
	broker.Totals
}

// figures is what a request gathers from the broker at once.
type figures struct {
	snap  broker.Snapshot
	by    map[string]*transportFigures // every transport label known
	total broker.Totals
}

// labels returns the transport labels in order.
func (f *figures) labels() []string {
	out := make([]string, 0, len(f.by))
	for l := range f.by {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// gather takes a broker snapshot (with subscriptions when subs) and sums
// it by transport. Counters never go backwards: out messages counted from
// subscriptions (transports without broker.ConnStatser) lose the
// deliveries of a subscription once it is removed, so each transport's
// counters are the highest seen. Takes s.mu.
func (s *Server) gather(subs bool) *figures {
	f := &figures{snap: s.b.Snapshot(subs), by: make(map[string]*transportFigures)}
	get := func(l string) *transportFigures {
		t := f.by[l]
		if t == nil {
			t = &transportFigures{}
			f.by[l] = t
		}
		return t
	}
	for _, svc := range s.b.Services() {
		if svc != broker.Service(s) {
			get(svc.Name())
		}
	}
	for k, t := range f.snap.Closed {
		get(transportOf(k.ConnType, k.Transport)).Add(t)
	}
	for i := range f.snap.Conns {
		c := &f.snap.Conns[i]
		t := get(transportOf(c.Info.ConnType, c.Info.Transport))
		t.Add(c.Totals)
		if !c.Detached {
			t.Conns++
		}
	}
	s.mu.Lock()
	for l, t := range f.by {
		h := s.high[l]
		h.InMsgs, h.InBytes = max(h.InMsgs, t.InMsgs), max(h.InBytes, t.InBytes)
		h.OutMsgs, h.OutBytes = max(h.OutMsgs, t.OutMsgs), max(h.OutBytes, t.OutBytes)
		s.high[l] = h
		t.Totals = h
		f.total.Add(h)
	}
	s.mu.Unlock()
	return f
}

// listenAddr is the address of the service named name, or nil.
func (s *Server) listenAddr(name string) *net.TCPAddr {
	for _, svc := range s.b.Services() {
		if svc.Name() != name {
			continue
		}
		if a, ok := svc.(interface{ Addr() net.Addr }); ok {
			if ta, ok := a.Addr().(*net.TCPAddr); ok {
				return ta
			}
		}
	}
	return nil
}
