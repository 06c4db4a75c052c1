// Package errlist collects the asynchronous errors of one bench run (the
// callbacks of many client connections report into one list).
package errlist

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// List keeps the first five errors added. The zero value is empty; any
// goroutine.
type List struct {
	mu   sync.Mutex
	list []string
}

// Add records an error, formatted as fmt.Sprintf does.
func (e *List) Add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.list) < 5 {
		e.list = append(e.list, fmt.Sprintf(format, args...))
	}
}

// Err joins the errors recorded with "; ", or is nil.
func (e *List) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.list) == 0 {
		return nil
	}
	return errors.New(strings.Join(e.list, "; "))
}
