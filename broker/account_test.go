package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// in connects an in-process client as a user of account acc.
func in(t testing.TB, b *broker.Broker, acc string) *broker.Local {
	t.Helper()
	l, err := b.LocalAs(t.Name()+"/"+acc, &auth.Identity{Name: "u-" + acc, Account: acc})
	require.NoError(t, err)
	return l
}

// inline subscribes and collects "subject payload" strings.
func inline(t testing.TB, l *broker.Local, filter string) *[]string {
	t.Helper()
	var got []string
	_, err := l.SubscribeInline(filter, func(m *broker.Message) { got = append(got, string(m.Subject)+" "+string(m.Payload)) })
	require.NoError(t, err)
	return &got
}

func TestAccountsIsolated(t *testing.T) {
	b := newBroker(t, broker.Options{})
	a1, a2, g := in(t, b, "A"), in(t, b, "A"), in(t, b, "")
	bb := in(t, b, "B")
	gotA, gotB, gotG := inline(t, a2, ">"), inline(t, bb, ">"), inline(t, g, ">")
	sys, err := b.Local("plain") // no identity: the global account
	require.NoError(t, err)
	gotSys := inline(t, sys, ">")

	require.NoError(t, a1.Publish("x.1", []byte("a")))
	require.NoError(t, bb.Publish("x.2", []byte("b")))
	require.NoError(t, g.Publish("x.3", []byte("g")))
	require.Equal(t, []string{"x.1 a"}, *gotA)
	require.Equal(t, []string{"x.2 b"}, *gotB)
	require.Equal(t, []string{"x.3 g"}, *gotG)
	require.Equal(t, []string{"x.3 g"}, *gotSys, `"" and "$G" are the same global account`)

	c := in(t, b, "C")
	_, err = c.Request(context.Background(), "x.2", nil)
	require.ErrorIs(t, err, broker.ErrNoResponders, "B's subscriber is no responder for C")
}

func TestAccountStreamImport(t *testing.T) {
	b := newBroker(t, broker.Options{Accounts: []broker.Account{
		{Name: "A", Exports: []broker.Export{{Subject: "x.>"}, {Subject: "only.c", Accounts: []string{"C"}}}},
		{Name: "B", Imports: []broker.Import{
			{Account: "A", Subject: "x.>", To: "from.a.x.>"},
		}},
		{Name: "C", Imports: []broker.Import{
			{Account: "A", Subject: "x.*.y", To: "y.*"},
			{Account: "A", Subject: "only.c"},
		}},
	}})
	a, bb, c := in(t, b, "A"), in(t, b, "B"), in(t, b, "C")
	gotA, gotB, gotC := inline(t, a, ">"), inline(t, bb, ">"), inline(t, c, ">")

	require.NoError(t, a.Publish("x.1.y", []byte("p1")))
	require.NoError(t, a.Publish("only.c", []byte("p2")))
	require.NoError(t, bb.Publish("x.1.y", []byte("local"))) // B's own x.1.y goes nowhere else
	require.Equal(t, []string{"x.1.y p1", "only.c p2"}, *gotA)
	require.Equal(t, []string{"from.a.x.1.y p1", "x.1.y local"}, *gotB)
	require.Equal(t, []string{"y.1 p1", "only.c p2"}, *gotC)
}

func TestAccountServiceImportRequestReply(t *testing.T) {
	b := newBroker(t, broker.Options{Accounts: []broker.Account{
		{Name: "SVC", Exports: []broker.Export{{Subject: "svc.>", Service: true}}},
		{Name: "APP", Imports: []broker.Import{{Service: true, Account: "SVC", Subject: "svc.time", To: "time"}}},
	}})
	svc, app := in(t, b, "SVC"), in(t, b, "APP")
	var seen string
	_, err := svc.Subscribe("svc.*", func(m *broker.Message) {
		seen = string(m.Subject) + " reply=" + string(m.Reply)
		_ = svc.Publish(string(m.Reply), append([]byte("now:"), m.Payload...))
	})
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := app.Request(ctx, "time", []byte("q"))
	require.NoError(t, err)
	require.Equal(t, "now:q", string(r.Payload))
	require.Regexp(t, `^svc\.time reply=_R_\.[0-9a-f]+\.1$`, seen, "the responder sees the exporter's reply subject, not APP's inbox")

	// The service is not visible in APP under the exporter's name.
	_, err = app.Request(ctx, "svc.time", nil)
	require.ErrorIs(t, err, broker.ErrNoResponders)

	// Singleton: the mapping is used up by the first response.
	reply := seen[len("svc.time reply="):]
	got := inline(t, app, ">")
	require.NoError(t, svc.Publish(reply, []byte("late")))
	require.Empty(t, *got)

}

func TestAccountServiceNoResponders(t *testing.T) {
	b := newBroker(t, broker.Options{Accounts: []broker.Account{
		{Name: "SVC", Exports: []broker.Export{{Subject: "svc.a", Service: true}}},
		{Name: "APP", Imports: []broker.Import{{Service: true, Account: "SVC", Subject: "svc.a"}}},
	}})
	app := in(t, b, "APP")
	_, err := app.Request(context.Background(), "svc.a", nil)
	require.ErrorIs(t, err, broker.ErrNoResponders)
}

func TestAccountStreamResponses(t *testing.T) {
	b := newBroker(t, broker.Options{Accounts: []broker.Account{
		{Name: "SVC", Exports: []broker.Export{{Subject: "feed", Service: true, ResponseType: "stream", ResponseThreshold: time.Minute}}},
		{Name: "APP", Imports: []broker.Import{{Service: true, Account: "SVC", Subject: "feed"}}},
	}})
	svc, app := in(t, b, "SVC"), in(t, b, "APP")
	_, err := svc.SubscribeInline("feed", func(m *broker.Message) {
		for _, p := range []string{"1", "2", "3"} {
			_ = svc.Publish(string(m.Reply), []byte(p))
		}
	})
	require.NoError(t, err)
	got := inline(t, app, "inbox")
	require.NoError(t, app.PublishMsg(&broker.Message{Subject: []byte("feed"), Reply: []byte("inbox")}))
	require.Equal(t, []string{"inbox 1", "inbox 2", "inbox 3"}, *got)
}

// Disjoint imports both ways are no cycle.
func TestAccountImportsBothWays(t *testing.T) {
	require.Empty(t, broker.CheckAccounts([]broker.Account{
		{Name: "A", Exports: []broker.Export{{Subject: "a.>"}}, Imports: []broker.Import{{Account: "B", Subject: "b.>"}}},
		{Name: "B", Exports: []broker.Export{{Subject: "b.>"}}, Imports: []broker.Import{{Account: "A", Subject: "a.>"}}},
	}))
}

func TestAccountImportsNeedExports(t *testing.T) {
	for _, tc := range []struct {
		label string
		accs  []broker.Account
		want  string
	}{
		{"no such account", []broker.Account{{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x"}}}},
			`account B: import 1: account "A" is not declared (it must export "x")`},
		{"not exported", []broker.Account{{Name: "A"}, {Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x"}}}},
			`account B: import 1: account A exports no stream covering "x" to B`},
		{"wrong kind", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x"}}},
			{Name: "B", Imports: []broker.Import{{Service: true, Account: "A", Subject: "x"}}}},
			`account B: import 1: account A exports no service covering "x" to B`},
		{"wider than the export", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x.*"}}},
			{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x.>"}}}},
			`account B: import 1: account A exports no stream covering "x.>" to B`},
		{"exported to someone else", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x", Accounts: []string{"C"}}}},
			{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x"}}}},
			`account B: import 1: account A exports no stream covering "x" to B`},
		{"from itself", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x"}}, Imports: []broker.Import{{Account: "A", Subject: "x"}}}},
			`account A: import 1: an account cannot import from itself`},
		{"bad mapping", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x.*"}}},
			{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x.*", To: "y.*.*"}}}},
			`account B: import 1: cannot map "x.*" to "y.*.*": it has more "*" than "x.*"`},
		{"bad export", []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x..y"}}}},
			`account A: export 1: "x..y" is not a valid subject`},
		{"twice", []broker.Account{{Name: "A"}, {Name: "A"}}, `account A: declared more than once`},
		{"stream cycle", []broker.Account{
			{Name: "A", Exports: []broker.Export{{Subject: "x.>"}}, Imports: []broker.Import{{Account: "B", Subject: "y.>", To: "x.b.>"}}},
			{Name: "B", Exports: []broker.Export{{Subject: "y.>"}}, Imports: []broker.Import{{Account: "A", Subject: "x.>", To: "y.a.>"}}}},
			`account A: import 1: forms a cycle: messages on "y.>" can come back to account B`},
		{"service cycle", []broker.Account{
			{Name: "A", Exports: []broker.Export{{Subject: "s", Service: true}}, Imports: []broker.Import{{Service: true, Account: "B", Subject: "s"}}},
			{Name: "B", Exports: []broker.Export{{Subject: "s", Service: true}}, Imports: []broker.Import{{Service: true, Account: "A", Subject: "s"}}}},
			`account A: import 1: forms a cycle: messages on "s" can come back to account A`},
	} {
		t.Run(tc.label, func(t *testing.T) {
			errs := broker.CheckAccounts(tc.accs)
			require.NotEmpty(t, errs)
			require.Equal(t, tc.want, errs[0].Error())
			_, err := broker.New(broker.Options{Accounts: tc.accs})
			require.ErrorIs(t, err, broker.ErrInvalidOption)
		})
	}
}

// A publish that crosses into another account allocates nothing once the
// forwarding scratch has grown, as a plain publish.
func TestAccountForwardNoAllocation(t *testing.T) {
	b := newBroker(t, broker.Options{Accounts: []broker.Account{
		{Name: "A", Exports: []broker.Export{{Subject: "x.>"}}},
		{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "x.>", To: "a.x.>"}}},
	}})
	a, bb := in(t, b, "A"), in(t, b, "B")
	n := 0
	_, err := bb.SubscribeInline("a.x.*", func(*broker.Message) { n++ })
	require.NoError(t, err)
	payload := []byte("p")
	allocs := testing.AllocsPerRun(200, func() { _ = a.Publish("x.1", payload) })
	require.Zero(t, allocs)
	require.Equal(t, 201, n)
}

// A reload replaces the imports; the accounts' subscriptions stay.
func TestAccountReloadImports(t *testing.T) {
	accs := []broker.Account{{Name: "A", Exports: []broker.Export{{Subject: "x"}, {Subject: "y"}}}, {Name: "B"}}
	b := newBroker(t, broker.Options{Accounts: accs})
	a, bb := in(t, b, "A"), in(t, b, "B")
	got := inline(t, bb, ">")
	require.NoError(t, a.Publish("x", []byte("1")))
	require.Empty(t, *got)

	accs2 := []broker.Account{accs[0], {Name: "B", Imports: []broker.Import{{Account: "A", Subject: "y"}}}}
	require.NoError(t, b.Reload(broker.Options{Accounts: accs2}))
	require.NoError(t, a.Publish("x", []byte("2")))
	require.NoError(t, a.Publish("y", []byte("3")))
	require.Equal(t, []string{"y 3"}, *got)

	n := b.NumSubscriptions()
	require.NoError(t, b.Reload(broker.Options{Accounts: accs2}), "the same imports again")
	require.Equal(t, n, b.NumSubscriptions(), "an unchanged import keeps its subscription")

	bad := []broker.Account{{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "z"}}}}
	require.ErrorIs(t, b.Reload(broker.Options{Accounts: bad}), broker.ErrInvalidOption)
	require.NoError(t, a.Publish("y", []byte("4")), "a refused reload keeps the running imports")
	require.Equal(t, []string{"y 3", "y 4"}, *got)
}

// BenchmarkAccountStreamImport is BenchmarkLocalPublishInline across a
// stream import with a subject mapping: the publisher's account routes to
// the import, which routes into the importer's account.
func BenchmarkAccountStreamImport(b *testing.B) {
	br := newBroker(b, broker.Options{Accounts: []broker.Account{
		{Name: "A", Exports: []broker.Export{{Subject: "bench.>"}}},
		{Name: "B", Imports: []broker.Import{{Account: "A", Subject: "bench.>", To: "a.bench.>"}}},
	}})
	pub, sub := in(b, br, "A"), in(b, br, "B")
	n := 0
	_, err := sub.SubscribeInline("a.bench.x", func(*broker.Message) { n++ })
	require.NoError(b, err)
	payload := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("bench.x", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.Equal(b, b.N, n)
}

// BenchmarkAccountServiceRequest is one request and its response through
// a service import, both inline.
func BenchmarkAccountServiceRequest(b *testing.B) {
	br := newBroker(b, broker.Options{Accounts: []broker.Account{
		{Name: "SVC", Exports: []broker.Export{{Subject: "svc.>", Service: true}}},
		{Name: "APP", Imports: []broker.Import{{Service: true, Account: "SVC", Subject: "svc.echo", To: "echo"}}},
	}})
	svc, app := in(b, br, "SVC"), in(b, br, "APP")
	_, err := svc.SubscribeInline("svc.echo", func(m *broker.Message) { _ = svc.Publish(string(m.Reply), m.Payload) })
	require.NoError(b, err)
	n := 0
	_, err = app.SubscribeInline("inbox", func(*broker.Message) { n++ })
	require.NoError(b, err)
	req := &broker.Message{Subject: []byte("echo"), Reply: []byte("inbox"), Payload: make([]byte, 16)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := app.PublishMsg(req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.Equal(b, b.N, n)
}
