package leafnode

import (
	"time"
)

// Leafz is the /leafz document, with nats-server's field names.
type Leafz struct {
	ID       string     `json:"server_id"`
	Now      time.Time  `json:"now"`
	NumLeafs int        `json:"leafnodes"`
	Leafs    []LeafInfo `json:"leafs"`
}

// LeafInfo is one leaf connection in Leafz (nats-server's LeafInfo).
type LeafInfo struct {
	ID       uint64 `json:"id"`
	Name     string `json:"name"`
	IsSpoke  bool   `json:"is_spoke"`
	Account  string `json:"account"`
	IP       string `json:"ip"`
	Port     int    `json:"port"`
	RTT      string `json:"rtt,omitempty"`
	InMsgs   int64  `json:"in_msgs"`
	OutMsgs  int64  `json:"out_msgs"`
	InBytes  int64  `json:"in_bytes"`
	OutBytes int64  `json:"out_bytes"`
	Subs     uint32 `json:"subscriptions"`
}

// Leafz lists the links that are connected now. The message and byte
// counts are per remote since the service started (nats-server counts
// per connection).
func (s *Service) Leafz() *Leafz {
	z := &Leafz{Now: time.Now().UTC(), Leafs: []LeafInfo{}}
	s.mu.Lock()
	if s.b != nil {
		z.ID = s.b.ID()
	}
	s.mu.Unlock()
	for _, l := range s.links {
		c := l.current()
		if c == nil || c.sess == nil {
			continue
		}
		li := c.snapshot()
		li.InMsgs, li.InBytes = l.stats.inMsgs.Load(), l.stats.inBytes.Load()
		li.OutMsgs, li.OutBytes = l.stats.outMsgs.Load(), l.stats.outBytes.Load()
		z.Leafs = append(z.Leafs, li)
	}
	z.NumLeafs = len(z.Leafs)
	return z
}

// RemoteStats are one remote's figures, for metrics.
type RemoteStats struct {
	URLs       []string // as configured
	Account    string
	Up         bool   // connected and accepted by the hub
	URL        string // the hub URL connected to now (no user info)
	Hub        string // the hub's server name
	Reconnects int64  // connections lost after they were up
	LastError  string // why the last connection ended or failed

	InMsgs, InBytes   int64 // from the hub
	OutMsgs, OutBytes int64 // to the hub
	// TooLong counts messages and interests not sent to the hub: their
	// subject makes a line longer than a leaf connection of the hub takes
	// (64 KiB by default).
	TooLong int64
}

// Stats returns the figures of every remote, in configuration order.
func (s *Service) Stats() []RemoteStats {
	out := make([]RemoteStats, 0, len(s.links))
	for _, l := range s.links {
		st := RemoteStats{
			URLs: l.r.URLs, Account: accountName(l.r.Account), Reconnects: l.reconnects.Load(),
			InMsgs: l.stats.inMsgs.Load(), InBytes: l.stats.inBytes.Load(),
			OutMsgs: l.stats.outMsgs.Load(), OutBytes: l.stats.outBytes.Load(), TooLong: l.stats.tooLong.Load(),
		}
		l.mu.Lock()
		if c := l.cur; c != nil {
			st.Up = c.upFlag.Load()
			st.URL = redact(c.url)
			st.Hub = c.info.Name
		}
		if l.last != nil {
			st.LastError = l.last.Error()
		}
		l.mu.Unlock()
		out = append(out, st)
	}
	return out
}
