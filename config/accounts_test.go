package config_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/natsproto"
)

const accountsConf = `
accounts {
  SVC: {
    users: [{user: svc, password: svcpw}]
    exports: [{stream: "events.>"}]
  }
  APP: {
    users: [{user: app, password: apppw}]
    IMPORTS
  }
}
`

// TestReloadAccounts: a file's accounts take effect, and a reload
// replaces the imports of connected clients' accounts live.
func TestReloadAccounts(t *testing.T) {
	withImport := strings.Replace(accountsConf, "IMPORTS", `imports: [{stream: {account: SVC, subject: "events.>"}, prefix: svc}]`, 1)
	cur := mustParse(t, withImport)
	opts, err := cur.BrokerOptions(nil)
	require.NoError(t, err)
	b, err := broker.New(opts)
	require.NoError(t, err)
	defer b.Shutdown(context.Background())
	dial := func(user string) *nats.Conn {
		nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo(user, user+"pw"), nats.NoReconnect())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	}
	svc, app := dial("svc"), dial("app")
	sub, err := app.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, app.Flush())
	require.NoError(t, svc.Publish("events.a", []byte("1")))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "svc.events.a", m.Subject)

	next := mustParse(t, strings.Replace(accountsConf, "IMPORTS", "", 1))
	require.NoError(t, config.Reload(b, cur, next, nil))
	require.NoError(t, svc.Publish("events.b", []byte("2")))
	require.NoError(t, svc.Flush())
	_, err = sub.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "the reload removed the import")
	require.False(t, app.IsClosed(), "the account did not change: the client stays")

	_, err = config.Parse([]byte(strings.Replace(accountsConf, "IMPORTS", `imports: [{stream: {account: SVC, subject: "other"}}]`, 1)), "bad.conf")
	require.EqualError(t, err, `bad.conf:9:15: accounts: account APP: import: account SVC exports no stream covering "other" to APP`)
}
