package monitor

import (
	"fmt"
	"net/http"
	"time"

	"github.com/busbar/busbar/subject"
)

// Subsz is the router's figures, with nats-server's /subsz field names,
// and with subs=1 a page of subscriptions. nats-server's num_inserts,
// num_removes, num_matches and cache_hit_rate are not kept by busbar's
// router and are left out.
type Subsz struct {
	ID  string    `json:"server_id"`
	Now time.Time `json:"now"`
	SublistStats
	Total  int         `json:"total"` // subscriptions matching the query (all pages)
	Offset int         `json:"offset"`
	Limit  int         `json:"limit"`
	Subs   []SubDetail `json:"subscriptions_list,omitempty"`
}

// SublistStats are the router's figures (every account, or the one asked
// for).
type SublistStats struct {
	NumSubs   uint32  `json:"num_subscriptions"`
	NumCache  uint32  `json:"num_cache"`
	MaxFanout uint32  `json:"max_fanout"`
	AvgFanout float64 `json:"avg_fanout"`
}

// SubszOptions are the /subsz query parameters.
type SubszOptions struct {
	Subs    bool // list subscriptions
	Offset  int
	Limit   int    // 0: DefaultListSize
	Account string // only this account
	Test    string // only subscriptions a message to this literal subject would reach
}

// Subsz gathers the router's figures and, with o.Subs, the
// subscriptions of connections and MQTT sessions (imports' internal
// subscriptions are counted in num_subscriptions but not listed).
func (s *Server) Subsz(o SubszOptions) (*Subsz, error) {
	if o.Test != "" && !subject.ValidLiteral([]byte(o.Test)) {
		return nil, fmt.Errorf("invalid test subject, must be valid publish subject: %s", o.Test)
	}
	o.Offset = max(o.Offset, 0)
	if o.Limit <= 0 {
		o.Limit = DefaultListSize
	}
	rs := s.b.RouterStats(o.Account)
	sz := &Subsz{
		ID: s.b.ID(), Now: time.Now().UTC(), Offset: o.Offset, Limit: o.Limit,
		SublistStats: SublistStats{
			NumSubs: uint32(rs.Subscriptions), NumCache: uint32(rs.CacheEntries),
			MaxFanout: uint32(rs.MaxFanout), AvgFanout: rs.AvgFanout,
		},
	}
	if !o.Subs {
		sz.Total = rs.Subscriptions
		return sz, nil
	}
	var list []SubDetail
	snap := s.b.Snapshot(true)
	live := make(map[string]uint64) // MQTT client id → its connection's cid
	for _, c := range snap.Conns {
		if !c.Detached && isMQTT(c.Info.ConnType) {
			live[c.Info.Name] = c.Info.ID
		}
	}
	for _, c := range snap.Conns {
		if o.Account != "" && c.Account != o.Account {
			continue
		}
		cid := c.Info.ID
		if id, ok := live[c.Info.Name]; ok && c.Detached && isMQTT(c.Info.ConnType) {
			cid = id // a session's subscriptions belong to its client's connection
		}
		for _, sub := range c.Subs {
			if o.Test != "" && !subject.Match([]byte(sub.Subject), []byte(o.Test)) {
				continue
			}
			list = append(list, SubDetail{Account: c.Account, Subject: sub.Subject, Queue: sub.Queue, Msgs: sub.Delivered, Max: sub.Max, Cid: cid})
		}
	}
	sz.Total = len(list)
	lo, hi := min(o.Offset, len(list)), min(o.Offset+o.Limit, len(list))
	sz.Subs = list[lo:hi]
	return sz, nil
}

func (s *Server) handleSubsz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	o := SubszOptions{Account: q.Get("acc"), Test: q.Get("test")}
	var err error
	if o.Subs, err = queryBool(q, "subs"); err == nil {
		if o.Offset, err = queryInt(q, "offset"); err == nil {
			o.Limit, err = queryInt(q, "limit")
		}
	}
	if err == nil {
		var sz *Subsz
		if sz, err = s.Subsz(o); err == nil {
			writeJSON(w, http.StatusOK, sz)
			return
		}
	}
	badRequest(w, err.Error())
}
