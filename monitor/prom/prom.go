// Package prom exposes a broker's monitoring figures as a
// prometheus.Collector, for a host application that serves its own
// Prometheus registry:
//
//	mon := monitor.New(b, monitor.Options{})
//	reg.MustRegister(prom.NewCollector(mon))
//
// The metric names, help texts and labels are the ones monitor's
// built-in /metrics writes (monitor.Metric*). Handler is what the
// standalone busbar serves at /metrics: the same figures with the Go
// runtime and process collectors. This package is the only one that
// imports the Prometheus client library, so an embedder who does not
// import it does not link it.
package prom

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/busbar/busbar/monitor"
)

// Collector is mon's figures as a prometheus.Collector. Its label sets
// vary with what runs (transports, leaf node remotes, close reasons), so
// it is an unchecked collector: Describe sends nothing.
type Collector struct {
	mon *monitor.Server
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns the collector of mon's figures.
func NewCollector(mon *monitor.Server) *Collector { return &Collector{mon: mon} }

// Describe sends no descriptor (an unchecked collector).
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect sends every figure monitor.Server.Metrics gathers.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.mon.Metrics() {
		desc := prometheus.NewDesc(f.Name, f.Help, f.Labels, nil)
		vt := prometheus.GaugeValue
		if f.Type == "counter" {
			vt = prometheus.CounterValue
		}
		for _, s := range f.Samples {
			m, err := prometheus.NewConstMetric(desc, vt, s.Value, s.LabelValues...)
			if err != nil {
				m = prometheus.NewInvalidMetric(desc, err)
			}
			ch <- m
		}
	}
}

// Registry returns a registry holding mon's collector and the Go runtime
// and process collectors (go_*, process_*).
func Registry(mon *monitor.Server) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(mon),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves Registry(mon) in the format the scraper asks for (text
// by default): the standalone busbar's /metrics, as
// monitor.Options{Metrics: prom.Handler}.
func Handler(mon *monitor.Server) http.Handler {
	return promhttp.HandlerFor(Registry(mon), promhttp.HandlerOpts{})
}
