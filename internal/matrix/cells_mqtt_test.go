package matrix

import (
	"testing"
)

// Row will: the will's publisher is MQTT over x (a hand-written CONNECT,
// retain set); its subscribers are on every transport. A forbidden will
// makes CONNECT fail, so no forbidden will ever exists; an allowed one is
// published when the connection drops, to those who may receive it.

// refusedCode is the CONNACK code of a will the user may not publish.
func refusedCode(x tp) byte {
	if mqttLevel(x) == 5 {
		return v5NotAuthorized
	}
	return v311NotAuthorized
}

// willPub: pub's will outside its allow list or in its deny list is
// refused at CONNECT; its allowed will reaches every transport and is
// retained.
func willPub(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	obs := observe(t, s, transports, "all", prefix+".>")
	forbid := []string{prefix + ".nopub.1", prefix + ".open.deny"}
	for _, f := range forbid {
		res, _ := connectWill(t, s, x, "pub", mqttTopic(f), false)
		if res.closed || res.code != refusedCode(x) {
			t.Errorf("CONNECT with the forbidden will %s: %s, want CONNACK 0x%02x", mqttTopic(f), res, refusedCode(x))
		}
	}
	res, _ := connectWill(t, s, x, "pub", mqttTopic(prefix+".open.1"), false)
	if !res.accepted {
		t.Fatalf("CONNECT with the allowed will: %s, want accepted", res)
	}
	for _, o := range obs {
		expect(t, o, []string{prefix + ".open.1"}, forbid)
	}
	for _, m := range mqttTransports {
		expectReplay(t, dial(t, s, m, "all"), prefix+".>", []string{prefix + ".open.1"}, forbid)
	}
}

// willInvalid: a will topic that is no topic name (+ and # are MQTT
// wildcards) or maps to no subject a message can be published on (NATS's
// * and > tokens, whitespace: the live publish path refuses them too)
// makes CONNECT fail: MQTT 5 CONNACK 0x90, 3.1.1 closes the connection.
// Nothing is published on it.
func willInvalid(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	obs := observe(t, s, transports, "all", prefix+".>")
	var forbid []string
	base := mqttTopic(prefix) + "/bad/"
	for _, topic := range []string{base + "+", base + "#", base + "*", base + ">", base + "a b"} {
		forbid = append(forbid, topicSubject(topic), topicSubject(mqttTopicToNATS(topic)))
		res, _ := connectWill(t, s, x, "all", topic, false)
		switch {
		case mqttLevel(x) == 5 && (res.closed || res.code != v5TopicInvalid):
			t.Errorf("CONNECT with the will topic %q: %s, want CONNACK 0x%02x", topic, res, v5TopicInvalid)
		case mqttLevel(x) == 4 && !res.closed:
			t.Errorf("CONNECT with the will topic %q: %s, want the connection closed", topic, res)
		}
	}
	res, _ := connectWill(t, s, x, "all", mqttTopic(prefix+".open.1"), false)
	if !res.accepted {
		t.Fatalf("CONNECT with a valid will: %s, want accepted", res)
	}
	for _, o := range obs {
		expect(t, o, []string{prefix + ".open.1"}, forbid)
	}
}

// mqttTopicToNATS is the subject a wildcard topic would become (+ → *,
// # → >), for recognizing a will published under it.
func mqttTopicToNATS(topic string) string {
	out := []byte(topic)
	for i, c := range out {
		switch c {
		case '+':
			out[i] = '*'
		case '#':
			out[i] = '>'
		}
	}
	return string(out)
}

// willSub: an allowed will is not delivered to a subscriber whose deny
// list covers it. A will has no publisher to flush, so the order comes
// from its subscribers: the first will (denied to sub) is seen by user all
// on every transport, so its one routing has run, before the second
// (allowed to sub) is triggered; sub's copy of the first, had the broker
// made one, would be queued ahead of the second.
func willSub(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	subs := observe(t, s, transports, "sub", prefix+".>")
	alls := observe(t, s, transports, "all", prefix+".>")
	secret := prefix + ".secret.1"
	if res, _ := connectWill(t, s, x, "pub", mqttTopic(secret), false); !res.accepted {
		t.Fatalf("CONNECT with the will %s: %s, want accepted", secret, res)
	}
	for _, a := range alls {
		expect(t, a, []string{secret}, nil)
	}
	if res, _ := connectWill(t, s, x, "pub", mqttTopic(prefix+".open.1"), false); !res.accepted {
		t.Fatalf("CONNECT with the allowed will: %s, want accepted", res)
	}
	for _, c := range subs {
		expect(t, c, []string{prefix + ".open.1"}, []string{secret})
	}
	for _, m := range mqttTransports {
		expectReplay(t, dial(t, s, m, "sub"), prefix+".>", []string{prefix + ".open.1"}, []string{secret})
	}
}

// willAccount: account A's will reaches A and not B, live or retained.
func willAccount(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	bs := observe(t, s, transports, "b", prefix+".>")
	as := observe(t, s, transports, "a", prefix+".>")
	iso := prefix + ".iso.1"
	if res, _ := connectWill(t, s, x, "a", mqttTopic(iso), false); !res.accepted {
		t.Fatalf("CONNECT with the will %s: %s, want accepted", iso, res)
	}
	for _, a := range as {
		expect(t, a, []string{iso}, nil)
	}
	open := prefix + ".open.1"
	if res, _ := connectWill(t, s, x, "b", mqttTopic(open), false); !res.accepted {
		t.Fatalf("CONNECT with the will %s: %s, want accepted", open, res)
	}
	for _, b := range bs {
		expect(t, b, []string{open}, []string{iso})
	}
	for _, m := range mqttTransports {
		expectReplay(t, dial(t, s, m, "b"), prefix+".>", []string{open}, []string{iso})
		expectReplay(t, dial(t, s, m, "a"), prefix+".>", []string{iso}, []string{open})
	}
}

// Row retained: MQTT over x sets retained messages; SUBSCRIBE over x
// replays them.

// retainedPub: pub's forbidden retained messages are neither delivered
// nor kept; its allowed one is both.
func retainedPub(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	obs := observe(t, s, transports, "all", prefix+".>")
	p := dial(t, s, x, "pub")
	forbid := []string{prefix + ".nopub.1", prefix + ".open.deny"}
	for _, f := range forbid {
		_ = p.retain(t, f, "forbidden")
	}
	if err := p.retain(t, prefix+".open.1", "allowed"); err != nil {
		t.Fatalf("retain %s.open.1 refused: %v", prefix, err)
	}
	for _, o := range obs {
		expect(t, o, []string{prefix + ".open.1"}, forbid)
	}
	for _, m := range mqttTransports {
		expectReplay(t, dial(t, s, m, "all"), prefix+".>", []string{prefix + ".open.1"}, forbid)
	}
}

// retainedSub: the replay on SUBSCRIBE obeys the subscriber's deny list:
// a refused subscription replays nothing, and a wildcard replays only
// what the subscriber may receive.
func retainedSub(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	setter := dial(t, s, x, "all")
	secret, open := prefix+".secret.1", prefix+".open.1"
	for _, r := range []string{secret, open} {
		if err := setter.retain(t, r, "retained"); err != nil {
			t.Fatalf("retain %s: %v", r, err)
		}
	}
	c := dial(t, s, x, "sub")
	mustRefuse(t, c, secret)
	expectReplay(t, c, prefix+".>", []string{open}, []string{secret})
}

// retainedAccount: retained messages belong to the account that set
// them: B neither sees A's nor plants one A (or the global account) sees.
func retainedAccount(t *testing.T, e *env, x tp, prefix string) {
	s := e.s
	iso, plant, glob := prefix+".iso.1", prefix+".plant.1", prefix+".glob.1"
	for user, subj := range map[string]string{"a": iso, "b": plant, "all": glob} {
		if err := dial(t, s, x, user).retain(t, subj, "retained by "+user); err != nil {
			t.Fatalf("retain %s as %s: %v", subj, user, err)
		}
	}
	expectReplay(t, dial(t, s, x, "b"), prefix+".>", []string{plant}, []string{iso, glob})
	expectReplay(t, dial(t, s, x, "a"), prefix+".>", []string{iso}, []string{plant, glob})
	expectReplay(t, dial(t, s, x, "all"), prefix+".>", []string{glob}, []string{iso, plant})
}

// Row offline: a persistent MQTT session over x subscribes, goes offline
// (DISCONNECT), messages are published from every transport, and the
// session resumes: its queue holds what it may receive, nothing else.

// offlineSession connects user's persistent session over x subscribed to
// prefix.> and leaves it offline; resume reconnects it.
func offlineSession(t *testing.T, s *server, x tp, user, prefix string, refuse ...string) (resume func() *client) {
	t.Helper()
	o := dialOpts{id: uniqueID("p"), persist: true}
	c := dial(t, s, x, user, o)
	for _, r := range refuse {
		mustRefuse(t, c, r)
	}
	mustSub(t, c, prefix+".>")
	c.close()
	return func() *client {
		t.Helper()
		r := dial(t, s, x, user, o)
		if !r.present {
			t.Errorf("%s: resumed without its session (session present 0)", r.name)
		}
		return r
	}
}

func offlinePub(t *testing.T, e *env, x tp, prefix string) {
	resume := offlineSession(t, e.s, x, "all", prefix)
	pubs := dialAll(t, e.s, transports, "pub")
	forbid := publishAll(t, pubs, prefix, "nopub", false)
	for _, p := range pubs {
		_ = p.publish(t, prefix+".open.deny", "forbidden")
	}
	forbid = append(forbid, prefix+".open.deny")
	want := publishAll(t, pubs, prefix, "open", true)
	expect(t, resume(), want, forbid)
}

func offlineSub(t *testing.T, e *env, x tp, prefix string) {
	resume := offlineSession(t, e.s, x, "sub", prefix, prefix+".secret.lit")
	pubs := dialAll(t, e.s, transports, "all")
	for _, p := range pubs {
		mustPublish(t, p, prefix+".secret.lit")
	}
	forbid := append(publishAll(t, pubs, prefix, "secret", true), prefix+".secret.lit")
	want := publishAll(t, pubs, prefix, "open", true)
	expect(t, resume(), want, forbid)
}

func offlineAccount(t *testing.T, e *env, x tp, prefix string) {
	resume := offlineSession(t, e.s, x, "b", prefix)
	forbid := publishAll(t, dialAll(t, e.s, transports, "a"), prefix, "iso", true)
	forbid = append(forbid, publishAll(t, dialAll(t, e.s, transports, "all"), prefix, "glob", true)...)
	want := publishAll(t, dialAll(t, e.s, transports, "b"), prefix, "open", true)
	expect(t, resume(), want, forbid)
}
