package matrix

import (
	"sync"
	"testing"

	"github.com/busbar/busbar/internal/natsserver"
)

// env is what a row shares between its cells: a broker built from the
// configuration (nil for rows whose cells start their own, because they
// restart or reload it), and for the leaf row the nats-server hub.
type env struct {
	s   *server
	hub *natsserver.Hub
}

// check is one check of a row, run for every transport except those
// skip names, each with the reason the combination does not apply.
type check struct {
	name string
	run  func(t *testing.T, e *env, x tp, prefix string)
	skip map[tp]string
}

// row is a path a message takes.
type row struct {
	path   string
	start  func(t *testing.T) *env // nil: every cell starts its own broker
	checks []check
}

// Reasons a combination does not apply.
const (
	whyWill     = "a will needs an MQTT publisher"
	whyRetained = "retained messages are set and replayed by MQTT clients"
	whySession  = "only an MQTT session outlives its connection"
	whyCatchUp  = "a new MQTT subscription catches up on MQTT publishes (mqtt/recent.go)"
	whyLocal    = "broker.Local clients are the host's: a reload leaves them alone (ARCHITECTURE.md, Reload)"
	whyRestPub  = "a publisher authenticates again after a restart: nothing of its publish permission is restored (live/*/pub covers it)"
	whyNoReply  = "MQTT has no reply subject to answer a service request on"
)

// only skips every transport but those given.
func only(why string, keep ...tp) map[tp]string {
	m := map[tp]string{}
	for _, x := range transports {
		m[x] = why
	}
	for _, x := range keep {
		delete(m, x)
	}
	return m
}

// skipAll skips every transport.
func skipAll(why string) map[tp]string { return only(why) }

// matrix is the table: one row per path, its checks, and what does not
// apply. The transport of a cell is that of the client under test: the
// publisher of a pub check, the subscriber of a sub or account check, the
// will's publisher, the MQTT session of the offline and restart rows, the
// in-process client's counterpart in the inproc row.
func matrix() []row {
	mqttOnly := func(why string) map[tp]string { return only(why, mqttTransports...) }
	notLocal := map[tp]string{inproc: whyLocal}
	return []row{
		{path: "live", start: sharedBroker, checks: []check{
			{name: "pub", run: livePub},
			{name: "sub", run: liveSub},
			{name: "account", run: liveAccount},
		}},
		{path: "will", start: sharedBroker, checks: []check{
			{name: "pub", run: willPub, skip: mqttOnly(whyWill)},
			{name: "invalid", run: willInvalid, skip: mqttOnly(whyWill)},
			{name: "sub", run: willSub, skip: mqttOnly(whyWill)},
			{name: "account", run: willAccount, skip: mqttOnly(whyWill)},
		}},
		{path: "retained", start: sharedBroker, checks: []check{
			{name: "pub", run: retainedPub, skip: mqttOnly(whyRetained)},
			{name: "sub", run: retainedSub, skip: mqttOnly(whyRetained)},
			{name: "account", run: retainedAccount, skip: mqttOnly(whyRetained)},
		}},
		{path: "catchup", start: sharedBroker, checks: []check{
			{name: "sub", run: catchUpSub, skip: mqttOnly(whyCatchUp)},
		}},
		{path: "offline", start: sharedBroker, checks: []check{
			{name: "pub", run: offlinePub, skip: mqttOnly(whySession)},
			{name: "sub", run: offlineSub, skip: mqttOnly(whySession)},
			{name: "account", run: offlineAccount, skip: mqttOnly(whySession)},
		}},
		{path: "restart", checks: []check{
			{name: "pub", skip: skipAll(whyRestPub)},
			{name: "sub", run: restartSub, skip: mqttOnly(whySession)},
			{name: "account", run: restartAccount, skip: mqttOnly(whySession)},
			{name: "retained", run: restartRetained, skip: mqttOnly(whyRetained)},
		}},
		{path: "reload", checks: []check{
			{name: "keep", run: reloadKeep, skip: notLocal},
			{name: "pub", run: reloadPub, skip: notLocal},
			{name: "sub", run: reloadSub, skip: notLocal},
			{name: "sub-offline", run: reloadSubOffline, skip: mqttOnly(whySession)},
			{name: "account", run: reloadAccount, skip: notLocal},
			{name: "account-offline", run: reloadAccountOffline, skip: mqttOnly(whySession)},
		}},
		{path: "leaf", start: leafBroker, checks: []check{
			{name: "in", run: leafIn},
			{name: "out", run: leafOut},
			{name: "pub", run: leafPub},
			{name: "sub", run: leafSub},
			{name: "account", run: leafAccount},
		}},
		{path: "import", start: sharedBroker, checks: []check{
			{name: "stream", run: importStream},
			{name: "sub", run: importSub},
			{name: "service", run: importService},
			{name: "reply", run: importReply, skip: only(whyNoReply, natsTCP, natsWS, inproc)},
		}},
		{path: "inproc", start: sharedBroker, checks: []check{
			{name: "pub", run: inprocPub},
			{name: "sub", run: inprocSub},
			{name: "account", run: inprocAccount},
			{name: "anon", run: inprocAnon},
		}},
	}
}

// maxCells bounds the cells running at once (each holds a few to a
// dozen connections).
const maxCells = 12

// TestMatrix runs every cell as TestMatrix/PATH/TRANSPORT/CHECK. Cells
// run concurrently (t.Run from goroutines, not t.Parallel, so -parallel's
// default of GOMAXPROCS does not serialize them on a 2-core machine).
func TestMatrix(t *testing.T) {
	sem := make(chan struct{}, maxCells)
	var wg sync.WaitGroup
	for _, r := range matrix() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(r.path, func(t *testing.T) { runRow(t, r, sem) })
		}()
	}
	wg.Wait()
}

func runRow(t *testing.T, r row, sem chan struct{}) {
	var e *env
	if r.start != nil {
		e = r.start(t)
	}
	var wg sync.WaitGroup
	for _, x := range transports {
		for _, c := range r.checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(string(x)+"/"+c.name, func(t *testing.T) {
					if why, ok := c.skip[x]; ok {
						t.Skip(why)
					}
					sem <- struct{}{}
					defer func() { <-sem }()
					c.run(t, e, x, r.path+"-"+c.name+"."+string(x))
				})
			}()
		}
	}
	wg.Wait()
}

// sharedBroker starts the row's broker from the base configuration.
func sharedBroker(t *testing.T) *env {
	return &env{s: startServer(t, confText(confOpts{}))}
}
