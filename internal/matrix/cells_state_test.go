package matrix

import (
	"testing"
)

// Row restart: each cell runs its own broker with the file store
// (jetstream { store_dir }), shuts it down and starts it again on the
// same directory with the same configuration. The persistent MQTT
// session over x is restored from the store and resumed after.

func restartServer(t *testing.T) *server {
	return startServer(t, confText(confOpts{storeDir: t.TempDir()}))
}

// restartSub: sub's restored session keeps its deny list, for what was
// queued before the restart, while offline after it, and live.
func restartSub(t *testing.T, _ *env, x tp, prefix string) {
	s := restartServer(t)
	o := dialOpts{id: uniqueID("p"), persist: true}
	c := dial(t, s, x, "sub", o)
	mustSub(t, c, prefix+".>")
	c.close()
	before := dial(t, s, inproc, "all")
	mustPublish(t, before, prefix+".secret.0")
	mustPublish(t, before, prefix+".open.0")

	s.restart(t)
	pubs := dialAll(t, s, transports, "all")
	forbid := append(publishAll(t, pubs, prefix, "secret", true), prefix+".secret.0")
	want := append(publishAll(t, pubs, prefix, "open", true), prefix+".open.0")
	r := dial(t, s, x, "sub", o)
	if !r.present {
		t.Errorf("%s: the session was not restored (session present 0)", r.name)
	}
	expect(t, r, want, forbid)

	live := dial(t, s, inproc, "all")
	mustPublish(t, live, prefix+".secret.live")
	mustPublish(t, live, prefix+".open.live")
	expect(t, r, []string{prefix + ".open.live"}, []string{prefix + ".secret.live"})
}

// restartAccount: asub's restored session (account A, deny list) gets
// account A's messages, not the global account's, and not what its deny
// list hides: queued before the restart, while offline after it, and live
// once its client is back.
func restartAccount(t *testing.T, _ *env, x tp, prefix string) {
	s := restartServer(t)
	o := dialOpts{id: uniqueID("p"), persist: true}
	c := dial(t, s, x, "asub", o)
	mustSub(t, c, prefix+".>")
	c.close()
	beforeA, beforeG := dial(t, s, inproc, "a"), dial(t, s, inproc, "all")
	mustPublish(t, beforeG, prefix+".glob.0")
	mustPublish(t, beforeA, prefix+".secret.0")
	mustPublish(t, beforeA, prefix+".open.0")

	s.restart(t)
	as := dialAll(t, s, transports, "a")
	forbid := publishAll(t, dialAll(t, s, transports, "all"), prefix, "glob", true)
	forbid = append(forbid, publishAll(t, as, prefix, "secret", true)...)
	forbid = append(forbid, prefix+".glob.0", prefix+".secret.0")
	want := append(publishAll(t, as, prefix, "open", true), prefix+".open.0")
	r := dial(t, s, x, "asub", o)
	if !r.present {
		t.Errorf("%s: the session was not restored (session present 0)", r.name)
	}
	expect(t, r, want, forbid)

	liveA, liveG := dial(t, s, inproc, "a"), dial(t, s, inproc, "all")
	mustPublish(t, liveG, prefix+".glob.live")
	mustPublish(t, liveA, prefix+".secret.live")
	mustPublish(t, liveA, prefix+".open.live")
	expect(t, r, []string{prefix + ".open.live"}, []string{prefix + ".glob.live", prefix + ".secret.live"})
}

// restartRetained: retained messages come back in their own account, and
// the replay still obeys the subscriber's deny list.
func restartRetained(t *testing.T, _ *env, x tp, prefix string) {
	s := restartServer(t)
	iso, plant, glob, secret := prefix+".iso.1", prefix+".plant.1", prefix+".glob.1", prefix+".secret.1"
	for _, r := range []struct{ user, subj string }{{"a", iso}, {"b", plant}, {"all", glob}, {"all", secret}} {
		if err := dial(t, s, x, r.user).retain(t, r.subj, "retained by "+r.user); err != nil {
			t.Fatalf("retain %s as %s: %v", r.subj, r.user, err)
		}
	}
	s.restart(t)
	expectReplay(t, dial(t, s, x, "b"), prefix+".>", []string{plant}, []string{iso, glob, secret})
	expectReplay(t, dial(t, s, x, "a"), prefix+".>", []string{iso}, []string{plant, glob, secret})
	expectReplay(t, dial(t, s, x, "sub"), prefix+".>", []string{glob}, []string{secret, iso, plant})
}

// Row reload: each cell runs its own broker and reloads it (config.Reload,
// as SIGHUP) from the base configuration to the second version, where rl
// may no longer publish or receive secret subjects and mover belongs to
// account B instead of A.

func reloadServer(t *testing.T) *server { return startServer(t, confText(confOpts{})) }

func reloadTo(t *testing.T, s *server, reloaded bool) {
	t.Helper()
	s.reload(t, confText(confOpts{reloaded: reloaded}))
}

// reloadKeep: a reload of the unchanged configuration disconnects nobody
// (users of the global account, of account A, with and without
// permissions) and keeps offline sessions.
func reloadKeep(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	users := []string{"rl", "sub", "a", "mover"}
	subs, pubs := make([]*client, len(users)), make([]*client, len(users))
	for i, u := range users {
		subs[i] = dial(t, s, x, u)
		mustSub(t, subs[i], prefix+".>")
		pubs[i] = dial(t, s, x, u)
	}
	var resume func() *client
	if x.mqtt() {
		resume = offlineSession(t, s, x, "rl", prefix)
	}
	reloadTo(t, s, false)
	for i, u := range users {
		if pubs[i].lostNow() {
			continue // reported below
		}
		mustPublish(t, pubs[i], prefix+".open."+u)
	}
	for i, u := range users {
		expect(t, subs[i], []string{prefix + ".open." + u}, nil)
	}
	expectKept(t, append(subs, pubs...)...)
	if resume != nil {
		expect(t, resume(), []string{prefix + ".open.rl"}, nil)
	}
}

// lostNow reports whether the broker has ended the connection.
func (c *client) lostNow() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// reloadPub: once the reload forbids rl to publish secret subjects, its
// connection's next one is not delivered; the allowed one is.
func reloadPub(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	obs := observe(t, s, transports, "all", prefix+".>")
	p := dial(t, s, x, "rl")
	mustPublish(t, p, prefix+".secret.0") // allowed before the reload
	reloadTo(t, s, true)
	_ = p.publish(t, prefix+".secret.1", "forbidden")
	mustPublish(t, p, prefix+".open.1")
	for _, o := range obs {
		expect(t, o, []string{prefix + ".secret.0", prefix + ".open.1"}, []string{prefix + ".secret.1"})
	}
}

// reloadSub: once the reload forbids rl to receive secret subjects, its
// connection gets none, on a literal subscription or a wildcard made
// before the reload.
func reloadSub(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	c := dial(t, s, x, "rl")
	mustSub(t, c, prefix+".secret.lit") // allowed before the reload
	mustSub(t, c, prefix+".>")
	reloadTo(t, s, true)
	pubs := dialAll(t, s, transports, "all")
	for _, p := range pubs {
		mustPublish(t, p, prefix+".secret.lit")
	}
	forbid := append(publishAll(t, pubs, prefix, "secret", true), prefix+".secret.lit")
	want := publishAll(t, pubs, prefix, "open", true)
	expect(t, c, want, forbid)
}

// reloadSubOffline: rl's offline session follows the reload too: what it
// queued before and what arrives after, it delivers on resume only if the
// new permissions allow it.
func reloadSubOffline(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	resume := offlineSession(t, s, x, "rl", prefix)
	before := dial(t, s, inproc, "all")
	mustPublish(t, before, prefix+".secret.q")
	mustPublish(t, before, prefix+".open.q")
	reloadTo(t, s, true)
	pubs := dialAll(t, s, transports, "all")
	forbid := append(publishAll(t, pubs, prefix, "secret", true), prefix+".secret.q")
	want := append(publishAll(t, pubs, prefix, "open", true), prefix+".open.q")
	expect(t, resume(), want, forbid)
}

// reloadAccount: a connected client whose user the reload moves from
// account A to B is closed; connecting again, it is in B: B's messages
// arrive, A's do not.
func reloadAccount(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	c := dial(t, s, x, "mover")
	mustSub(t, c, prefix+".>")
	reloadTo(t, s, true)
	expectLost(t, c, "the reload moved its user from account A to B")
	again := dial(t, s, x, "mover")
	mustSub(t, again, prefix+".>")
	forbid := publishAll(t, dialAll(t, s, transports, "a"), prefix, "iso", true)
	want := publishAll(t, dialAll(t, s, transports, "b"), prefix, "open", true)
	expect(t, again, want, forbid)
}

// reloadAccountOffline: the offline session of a user the reload moves
// from A to B ends: on reconnecting there is no session (present 0), and
// nothing of A's, queued before or published after, arrives.
func reloadAccountOffline(t *testing.T, _ *env, x tp, prefix string) {
	s := reloadServer(t)
	o := dialOpts{id: uniqueID("p"), persist: true}
	c := dial(t, s, x, "mover", o)
	mustSub(t, c, prefix+".>")
	c.close()
	mustPublish(t, dial(t, s, inproc, "a"), prefix+".iso.q")
	reloadTo(t, s, true)
	mustPublish(t, dial(t, s, inproc, "a"), prefix+".iso.r")
	r := dial(t, s, x, "mover", o)
	if r.present {
		t.Errorf("%s: resumed its account-A session after the reload moved it to B (session present 1), want a new session", r.name)
	}
	mustSub(t, r, prefix+".>")
	forbid := publishAll(t, dialAll(t, s, transports, "a"), prefix, "iso", true)
	forbid = append(forbid, prefix+".iso.q", prefix+".iso.r")
	want := publishAll(t, dialAll(t, s, transports, "b"), prefix, "open", true)
	expect(t, r, want, forbid)
}
