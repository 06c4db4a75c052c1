package broker

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on. Client-visible NATS strings live in
// natsproto; these are the broker's own outcomes.
var (
	ErrClosed         = errors.New("broker: closed")
	ErrServerShutdown = errors.New("broker: server shutdown")
	ErrLameDuck       = errors.New("broker: already in lame duck mode")
	ErrInvalidOption  = errors.New("broker: invalid option")
	ErrSlowConsumer   = errors.New("broker: slow consumer")
	ErrMaxConnections = errors.New("broker: maximum connections exceeded")
	ErrMaxSubs        = errors.New("broker: maximum subscriptions exceeded")
	ErrPermPublish    = errors.New("broker: publish not permitted")
	ErrPermSubscribe  = errors.New("broker: subscribe not permitted")
	ErrConnType       = errors.New("broker: connection type not allowed")
	ErrNoResponders   = errors.New("broker: no responders")
	ErrMaxPayload     = errors.New("broker: maximum payload exceeded")
	ErrSessionClosed  = errors.New("broker: session closed")
	ErrAuthExpired    = errors.New("broker: authorization expired")
	// ErrInvalidSubject: a subject or filter breaks NATS subject syntax.
	ErrInvalidSubject = errors.New("broker: invalid subject")
	// ErrNoSubscription: the subscription is not in the router.
	ErrNoSubscription = errors.New("broker: no such subscription")
)

// ErrAccountChanged closes a client whose user moved to another account
// at a reload (nats-server closes it so it reconnects into the new one).
var ErrAccountChanged = errors.New("broker: account changed by reload")

// AccountError is one problem with the declared accounts, located by
// account and export or import index (-1 where it is not about one).
type AccountError struct {
	Account        string
	Export, Import int
	Msg            string
}

func (e *AccountError) Error() string {
	switch {
	case e.Import >= 0:
		return fmt.Sprintf("account %s: import %d: %s", e.Account, e.Import+1, e.Msg)
	case e.Export >= 0:
		return fmt.Sprintf("account %s: export %d: %s", e.Account, e.Export+1, e.Msg)
	}
	return fmt.Sprintf("account %s: %s", e.Account, e.Msg)
}
