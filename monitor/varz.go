package monitor

import (
	"fmt"
	"net/http"
	"runtime"
	"runtime/metrics"
	"time"

	"github.com/busbar/busbar/broker"
)

// Varz is the server's configuration and figures, with nats-server's
// /varz field names. Durations are nanoseconds, as nats-server encodes
// them, except auth_timeout (seconds).
type Varz struct {
	ID               string            `json:"server_id"`
	Name             string            `json:"server_name"`
	Version          string            `json:"version"`
	Proto            int               `json:"proto"`
	GoVersion        string            `json:"go"`
	Host             string            `json:"host"`
	Port             int               `json:"port"`
	AuthRequired     bool              `json:"auth_required,omitempty"`
	MaxConn          int               `json:"max_connections"`
	MaxSubs          int               `json:"max_subscriptions,omitempty"`
	PingInterval     time.Duration     `json:"ping_interval"`
	MaxPingsOut      int               `json:"ping_max"`
	HTTPHost         string            `json:"http_host"`
	HTTPPort         int               `json:"http_port"`
	AuthTimeout      float64           `json:"auth_timeout"`
	MaxControlLine   int               `json:"max_control_line"`
	MaxPayload       int               `json:"max_payload"`
	MaxPending       int64             `json:"max_pending"`
	MQTT             HostPortVarz      `json:"mqtt,omitzero"`
	Websocket        HostPortVarz      `json:"websocket,omitzero"`
	WriteDeadline    time.Duration     `json:"write_deadline"`
	Start            time.Time         `json:"start"`
	Now              time.Time         `json:"now"`
	Uptime           string            `json:"uptime"`
	Mem              int64             `json:"mem"`
	Cores            int               `json:"cores"`
	MaxProcs         int               `json:"gomaxprocs"`
	Connections      int               `json:"connections"`
	TotalConnections uint64            `json:"total_connections"`
	InMsgs           int64             `json:"in_msgs"`
	OutMsgs          int64             `json:"out_msgs"`
	InBytes          int64             `json:"in_bytes"`
	OutBytes         int64             `json:"out_bytes"`
	SlowConsumers    int64             `json:"slow_consumers"`
	Subscriptions    uint32            `json:"subscriptions"`
	HTTPReqStats     map[string]uint64 `json:"http_req_stats"`

	// Transports (busbar): connections and counters by transport label
	// (nats, mqtt, websocket, inprocess).
	Transports map[string]TransportVarz `json:"transports"`
	// MQTTStats and StoreStats (busbar): when their sources are set.
	MQTTStats  *MQTTStats  `json:"mqtt_stats,omitempty"`
	StoreStats *StoreStats `json:"store_stats,omitempty"`
	// MQTTState (busbar) is where MQTT state lives: "local", or
	// "hub:<domain>" with HubStats.
	MQTTState string    `json:"mqtt_state,omitempty"`
	HubStats  *HubStats `json:"hub_stats,omitempty"`
}

// HostPortVarz is where a listener is bound.
type HostPortVarz struct {
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
}

// TransportVarz is one transport's connections and counters.
type TransportVarz struct {
	Connections int   `json:"connections"`
	InMsgs      int64 `json:"in_msgs"`
	OutMsgs     int64 `json:"out_msgs"`
	InBytes     int64 `json:"in_bytes"`
	OutBytes    int64 `json:"out_bytes"`
}

// Varz gathers the server's /varz.
func (s *Server) Varz() *Varz {
	o := s.b.Options()
	now := time.Now().UTC()
	start := s.b.StartTime()
	f := s.gather(false)
	v := &Varz{
		ID: s.b.ID(), Name: o.ServerName, Version: broker.Version, Proto: 1, GoVersion: broker.GoVersion(),
		AuthRequired: s.b.AuthRequired(), MaxConn: o.MaxConnections, MaxSubs: o.MaxSubscriptions,
		PingInterval: o.PingInterval, MaxPingsOut: o.PingMax, AuthTimeout: o.AuthTimeout.Seconds(),
		MaxControlLine: o.MaxControlLine, MaxPayload: o.MaxPayload, MaxPending: o.MaxPending,
		WriteDeadline: o.WriteDeadline, Start: start.UTC(), Now: now, Uptime: uptime(now.Sub(start)),
		Mem: residentBytes(), Cores: runtime.NumCPU(), MaxProcs: runtime.GOMAXPROCS(0),
		TotalConnections: f.snap.TotalConnections, SlowConsumers: s.b.Stats().SlowConsumers,
		Subscriptions: uint32(s.b.NumSubscriptions()), HTTPReqStats: s.requestStats(),
		InMsgs: f.total.InMsgs, InBytes: f.total.InBytes, OutMsgs: f.total.OutMsgs, OutBytes: f.total.OutBytes,
		Transports: make(map[string]TransportVarz, len(f.by)),
	}
	if a := s.listenAddr(TransportNATS); a != nil {
		v.Host, v.Port = a.IP.String(), a.Port
	}
	if a := s.listenAddr(TransportMQTT); a != nil {
		v.MQTT = HostPortVarz{Host: a.IP.String(), Port: a.Port}
	}
	if a := s.listenAddr(TransportWebSocket); a != nil {
		v.Websocket = HostPortVarz{Host: a.IP.String(), Port: a.Port}
	}
	if a := s.Addr(); a != nil {
		v.HTTPHost, v.HTTPPort = splitAddr(a.String())
	}
	for l, t := range f.by {
		v.Connections += t.Conns
		v.Transports[l] = TransportVarz{Connections: t.Conns, InMsgs: t.InMsgs, OutMsgs: t.OutMsgs, InBytes: t.InBytes, OutBytes: t.OutBytes}
	}
	if s.opts.MQTT != nil {
		m := s.opts.MQTT()
		v.MQTTStats = &m
	}
	if s.opts.Store != nil {
		st := s.opts.Store()
		v.StoreStats = &st
	}
	if v.MQTTStats != nil {
		v.MQTTState = "local"
	}
	if s.opts.Hub != nil {
		h := s.opts.Hub()
		v.HubStats, v.MQTTState = &h, "hub:"+h.Domain
	}
	return v
}

func (s *Server) handleVarz(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, s.Varz())
}

// uptime formats d as nats-server does: 1y2d3h4m5s, leading zero units
// left out.
func uptime(d time.Duration) string {
	secs := int64(d / time.Second)
	mins, hrs := secs/60, secs/3600
	days := hrs / 24
	yrs := days / 365
	switch {
	case yrs > 0:
		return fmt.Sprintf("%dy%dd%dh%dm%ds", yrs, days%365, hrs%24, mins%60, secs%60)
	case days > 0:
		return fmt.Sprintf("%dd%dh%dm%ds", days, hrs%24, mins%60, secs%60)
	case hrs > 0:
		return fmt.Sprintf("%dh%dm%ds", hrs, mins%60, secs%60)
	case mins > 0:
		return fmt.Sprintf("%dm%ds", mins, secs%60)
	}
	return fmt.Sprintf("%ds", secs)
}

// residentBytes estimates the process's resident memory from the Go
// runtime (mapped memory less what was returned to the OS), without
// stopping the world.
func residentBytes() int64 {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(samples)
	var v [2]uint64
	for i, sm := range samples {
		if sm.Value.Kind() == metrics.KindUint64 {
			v[i] = sm.Value.Uint64()
		}
	}
	if v[1] > v[0] {
		return 0
	}
	return int64(v[0] - v[1])
}
