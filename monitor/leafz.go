package monitor

import (
	"net/http"
	"strconv"
	"time"
)

// LeafRemote is one leaf node remote's figures (leafnode.Service.Stats),
// for /metrics.
type LeafRemote struct {
	Account    string
	Up         bool
	Reconnects int64

	InMsgs, InBytes   int64 // from the hub
	OutMsgs, OutBytes int64 // to the hub
}

// Metric names of the leaf node links.
const (
	MetricLeafUp         = "busbar_leafnode_up"
	MetricLeafReconnects = "busbar_leafnode_reconnects_total"
	MetricLeafInMsgs     = "busbar_leafnode_in_messages_total"
	MetricLeafOutMsgs    = "busbar_leafnode_out_messages_total"
	MetricLeafInBytes    = "busbar_leafnode_in_bytes_total"
	MetricLeafOutBytes   = "busbar_leafnode_out_bytes_total"
)

// emptyLeafz is /leafz of a broker without leaf node remotes, as
// nats-server answers it.
type emptyLeafz struct {
	ID       string     `json:"server_id"`
	Now      time.Time  `json:"now"`
	NumLeafs int        `json:"leafnodes"`
	Leafs    []struct{} `json:"leafs"`
}

func (s *Server) handleLeafz(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, s.leafz())
}

// leafz is the /leafz document: Options.Leafz's, or an empty one.
func (s *Server) leafz() any {
	if s.opts.Leafz != nil {
		return s.opts.Leafz()
	}
	return emptyLeafz{ID: s.b.ID(), Now: time.Now().UTC(), Leafs: []struct{}{}}
}

// writeLeafs writes one sample per remote of each leaf family, labelled
// with the remote's index in the configuration and its account.
func writeLeafs(p *metricSet, rs []LeafRemote) {
	fams := []struct {
		name, typ, help string
		v               func(r *LeafRemote) float64
	}{
		{MetricLeafUp, "gauge", "1 while the leaf node link to the remote is connected and accepted by the hub.", func(r *LeafRemote) float64 {
			if r.Up {
				return 1
			}
			return 0
		}},
		{MetricLeafReconnects, "counter", "Leaf node links lost after they were up.", func(r *LeafRemote) float64 { return float64(r.Reconnects) }},
		{MetricLeafInMsgs, "counter", "Messages received from the hub.", func(r *LeafRemote) float64 { return float64(r.InMsgs) }},
		{MetricLeafOutMsgs, "counter", "Messages sent to the hub.", func(r *LeafRemote) float64 { return float64(r.OutMsgs) }},
		{MetricLeafInBytes, "counter", "Message bytes received from the hub.", func(r *LeafRemote) float64 { return float64(r.InBytes) }},
		{MetricLeafOutBytes, "counter", "Message bytes sent to the hub.", func(r *LeafRemote) float64 { return float64(r.OutBytes) }},
	}
	for _, f := range fams {
		p.family(f.name, f.typ, f.help)
		for i := range rs {
			p.sample(f.name, f.v(&rs[i]), "remote", strconv.Itoa(i), "account", rs[i].Account)
		}
	}
}
