package main

import (
	"sync"
	"sync/atomic"
)

// request is one connection's pending write, waiting for its group.
type request struct {
	put  *rec
	del  []byte
	done chan error
}

// committer is a single goroutine that gathers every pending request into
// one group, hands the group to flush (which must make it durable with one
// sync), and then wakes all the waiters. While a group is being flushed,
// new requests queue up and form the next group, so the group size adapts
// to the load with no timer: one request alone is flushed at once.
type committer struct {
	flush func(group []*request) error

	mu      sync.Mutex
	pending []*request
	spare   []*request
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	groups  atomic.Uint64
}

func newCommitter(flush func([]*request) error) *committer {
	c := &committer{
		flush:   flush,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go c.loop()
	return c
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan error, 1)} }}

// submit queues put/del and waits until its group is durable.
func (c *committer) submit(put *rec, del []byte) error {
	r := requestPool.Get().(*request)
	r.put, r.del = put, del
	c.mu.Lock()
	c.pending = append(c.pending, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	err := <-r.done
	r.put, r.del = nil, nil
	requestPool.Put(r)
	return err
}

func (c *committer) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		group := c.pending
		if len(group) == 0 {
			c.mu.Unlock()
			continue
		}
		// pending and the group never share a backing array: the next
		// group gathers in the previous group's (now emptied) slice.
		c.pending, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		err := c.flush(group)
		c.groups.Add(1)
		for i, r := range group {
			r.done <- err
			group[i] = nil
		}
		c.spare = group
	}
}

// close stops the loop; callers must have no submit in progress.
func (c *committer) close() {
	close(c.stop)
	<-c.stopped
}
