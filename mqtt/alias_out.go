package mqtt

import (
	"bytes"
	"hash/maphash"
)

// Outbound topic aliases (5.0 §3.3.2.3.4): when a client's CONNECT allows
// them (Topic Alias Maximum > 0), the server gives the topics it sends an
// alias each, per connection only [MQTT-3.3.2-7]: the first PUBLISH on a
// topic carries the topic and its alias, later ones the alias and an empty
// topic. At most min(the client's maximum, MaxTopicAlias) aliases
// [MQTT-3.1.2-26], none when the client allows none [MQTT-3.1.2-27]; when
// all are taken the least recently used one is given to the new topic.
// The topics they name hold at most MaxAliasBytes; a topic that does not
// fit goes out whole. No allocation once every slot's buffer has grown to
// its topic. Guarded by the connection's Outbound lock, so aliases are
// assigned in the order the packets are written.
type aliasOut struct {
	seed  maphash.Seed
	max   int
	slots []aliasSlot // alias i+1
	clock uint64
	bytes int // capacity of the slots' topic buffers
}

type aliasSlot struct {
	hash  uint64
	topic []byte
	used  uint64
}

// newAliasOut is the alias table of a connection whose client allows
// clientMax aliases, with the server's bound serverMax; nil: no aliases.
func newAliasOut(clientMax uint16, serverMax int) *aliasOut {
	n := min(int(clientMax), serverMax)
	if n <= 0 {
		return nil
	}
	return &aliasOut{seed: maphash.MakeSeed(), max: n, slots: make([]aliasSlot, 0, n)}
}

// find returns the alias for topic (hash h): known when the client has
// it, else the alias to give it (0: none, the topic goes out whole).
// Nothing changes until use.
func (a *aliasOut) find(topic []byte, h uint64) (alias uint16, known bool) {
	for i := range a.slots {
		if s := &a.slots[i]; s.hash == h && bytes.Equal(s.topic, topic) {
			return uint16(i + 1), true
		}
	}
	if len(a.slots) < a.max {
		if a.bytes+len(topic) > MaxAliasBytes {
			return 0, false
		}
		return uint16(len(a.slots) + 1), false
	}
	lru := 0
	for i := range a.slots {
		if a.slots[i].used < a.slots[lru].used {
			lru = i
		}
	}
	if a.bytes-cap(a.slots[lru].topic)+max(len(topic), cap(a.slots[lru].topic)) > MaxAliasBytes {
		return 0, false
	}
	return uint16(lru + 1), false
}

// use records that a PUBLISH with alias for topic (hash h) was written:
// the alias is recently used, and names topic from now on when it was
// not known.
func (a *aliasOut) use(alias uint16, known bool, topic []byte, h uint64) {
	a.clock++
	i := int(alias) - 1
	if i == len(a.slots) {
		a.slots = append(a.slots, aliasSlot{})
	}
	s := &a.slots[i]
	s.used = a.clock
	if known {
		return
	}
	c := cap(s.topic)
	s.topic = append(s.topic[:0], topic...)
	a.bytes += cap(s.topic) - c
	s.hash = h
}

func (a *aliasOut) hash(topic []byte) uint64 { return maphash.Bytes(a.seed, topic) }
