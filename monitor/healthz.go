package monitor

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/busbar/busbar/broker"
)

// HealthStatus is the /healthz answer, as nats-server words it: status
// "ok" (200) or "unavailable" (503) with the reasons.
type HealthStatus struct {
	Status     string   `json:"status"`
	StatusCode int      `json:"status_code,omitempty"`
	Error      string   `json:"error,omitempty"`
	Errors     []string `json:"errors,omitempty"`
}

// Healthz reports whether the broker serves: it is not shutting down,
// every service the broker runs is bound (its Addr is known) and, when it
// says (broker.HealthChecker: every transport's listener), still
// accepting, and every Options.Checks passes (server.Start opens the
// store before any listener, so a running server has it loaded). nil:
// healthy.
func (s *Server) Healthz() []error {
	var errs []error
	if s.b.Closed() {
		errs = append(errs, errors.New("broker: shutting down"))
	}
	for _, svc := range s.b.Services() {
		if hc, ok := svc.(broker.HealthChecker); ok {
			if err := hc.Healthy(); err != nil {
				errs = append(errs, err) // names the listener: "nats: 127.0.0.1:4222: ..."
			}
		} else if a, ok := svc.(interface{ Addr() net.Addr }); ok && isNilAddr(a.Addr()) {
			errs = append(errs, fmt.Errorf("%s: not listening", svc.Name()))
		}
	}
	for _, c := range s.opts.Checks {
		if err := c.Check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	return errs
}

// isNilAddr sees through an interface holding a nil pointer.
func isNilAddr(a net.Addr) bool {
	if a == nil {
		return true
	}
	ta, ok := a.(*net.TCPAddr)
	return ok && ta == nil
}

func (s *Server) handleHealthz(w http.ResponseWriter) {
	h := healthStatus(s.Healthz())
	writeJSON(w, cmp.Or(h.StatusCode, http.StatusOK), h)
}

// healthStatus is the /healthz answer for errs (Healthz).
func healthStatus(errs []error) HealthStatus {
	if len(errs) == 0 {
		return HealthStatus{Status: "ok"}
	}
	h := HealthStatus{Status: "unavailable", StatusCode: http.StatusServiceUnavailable}
	for _, err := range errs {
		h.Errors = append(h.Errors, err.Error())
	}
	h.Error = strings.Join(h.Errors, "; ")
	return h
}
