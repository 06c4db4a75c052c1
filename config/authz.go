package config

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/subject"
)

// nats-server's allow_responses defaults.
const (
	defaultResponseMax     = 1
	defaultResponseExpires = 2 * time.Minute
)

// userPos remembers where a user was defined, for checks that need the
// whole file (a user without a password).
type userPos struct {
	name string
	pos  Pos
}

// authorization maps `authorization {}` onto c.Auth.
func (d *dec) authorization(e *Entry, c *Config) {
	m, ok := d.mapOf(e)
	if !ok {
		return
	}
	a := &c.Auth
	var single auth.User
	var usersPos, singlePos, tokenPos Pos
	f := map[string]field{
		"user":     func(e *Entry) { d.setStr(&single.Name)(e); singlePos = e.KeyPos },
		"password": d.setStr(&single.Password),
		"token":    func(e *Entry) { d.setStr(&a.Token)(e); tokenPos = e.KeyPos },
		"timeout":  d.setDur(&a.Timeout),
		"users": func(e *Entry) {
			usersPos = e.KeyPos
			a.Users = append(a.Users, d.users(e, "")...)
		},
		"permissions": func(e *Entry) { a.DefaultPerm = d.permissions(e) },
		"jwt":         func(e *Entry) { a.ExternalJWT = d.externalJWT(e) },
	}
	alias(f, "user", "username")
	alias(f, "password", "pass")
	alias(f, "permissions", "permission", "default_permission", "default_permissions")
	d.walk(m, block{name: "authorization", fields: f, ignored: []string{"auth_callout", "auth_hook", "proxy_required"}})
	switch {
	case single.Name != "" && usersPos != (Pos{}):
		d.errf(singlePos, "authorization: a single user and a users list cannot be combined")
	case a.Token != "" && usersPos != (Pos{}):
		d.errf(tokenPos, "authorization: a token and a users list cannot be combined")
	case a.Token != "" && single.Name != "":
		d.errf(tokenPos, "authorization: a token and a user cannot be combined")
	case single.Name != "":
		a.Users = append(a.Users, single)
	case single.Password != "":
		d.errf(e.Value.Pos, "authorization: password without user")
	}
}

// users reads a `users [...]` list; account is set on each user.
func (d *dec) users(e *Entry, account string) []auth.User {
	if e.Value.Kind != KindList {
		d.wrong(e, "a list of users")
		return nil
	}
	out := make([]auth.User, 0, len(e.Value.List))
	for _, v := range e.Value.List {
		if v.Kind != KindMap {
			d.errf(v.Pos, "users: each user is a {} block, got %s", describe(v))
			continue
		}
		u := auth.User{Account: account}
		f := map[string]field{
			"user":        d.setStr(&u.Name),
			"password":    d.setStr(&u.Password),
			"nkey":        d.setStr(&u.NKey),
			"api_key":     d.setStr(&u.APIKey),
			"account":     d.setStr(&u.Account),
			"permissions": func(e *Entry) { u.Perms = d.permissions(e) },
			"allowed_connection_types": func(e *Entry) {
				names, ok := d.strings(e)
				if !ok {
					return
				}
				for i, n := range names {
					t, err := auth.ParseConnType(n)
					if err != nil {
						at := e.Value.Pos
						if e.Value.Kind == KindList {
							at = e.Value.List[i].Pos
						}
						d.errf(at, "%s: unknown connection type %q (want STANDARD, WEBSOCKET, MQTT, MQTT_WS, LEAFNODE, LEAFNODE_WS or IN_PROCESS)", e.Key, n)
						continue
					}
					u.ConnTypes = u.ConnTypes.Add(t)
				}
			},
			"max_connections": d.setInt(&u.MaxConns, 0, math.MaxInt32),
		}
		alias(f, "user", "username")
		alias(f, "password", "pass")
		alias(f, "permissions", "permission", "authorization")
		alias(f, "allowed_connection_types", "connection_types", "clients")
		alias(f, "max_connections", "max_conn")
		d.walk(v.Map, block{name: "user", fields: f, ignored: []string{"proxy_required"}})
		switch {
		case u.NKey != "" && (!strings.HasPrefix(u.NKey, "U") || len(u.NKey) != 56):
			d.errf(v.Pos, "user: nkey %q is not a user public key (56 characters starting with U)", u.NKey)
		case u.Name == "" && u.NKey == "" && u.APIKey == "":
			d.errf(v.Pos, "user: needs user, nkey or api_key")
		case u.Name != "" && u.NKey == "" && u.Password == "" && u.APIKey == "":
			d.noPass = append(d.noPass, userPos{u.Name, v.Pos}) // checkAuth: a certificate may name it
		}
		out = append(out, u)
	}
	return out
}

// permissions reads {publish, subscribe, allow_responses}.
func (d *dec) permissions(e *Entry) *auth.Permissions {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	p := &auth.Permissions{}
	f := map[string]field{
		"publish":         func(e *Entry) { p.Publish = d.subjectPerm(e, false) },
		"subscribe":       func(e *Entry) { p.Subscribe = d.subjectPerm(e, true) },
		"allow_responses": func(e *Entry) { p.AllowResponses = d.allowResponses(e) },
	}
	alias(f, "publish", "pub", "import")
	alias(f, "subscribe", "sub", "export")
	alias(f, "allow_responses", "publish_allow_responses")
	d.walk(m, block{name: "permissions", fields: f})
	return p
}

// subjectPerm reads a list (allow), or {allow, deny}. Subscribe entries
// may be "subject queue".
func (d *dec) subjectPerm(e *Entry, sub bool) *auth.SubjectPermission {
	sp := &auth.SubjectPermission{}
	if e.Value.Kind != KindMap {
		sp.Allow = d.subjects(e, sub)
		return sp
	}
	f := map[string]field{
		"allow": func(e *Entry) { sp.Allow = d.subjects(e, sub) },
		"deny":  func(e *Entry) { sp.Deny = d.subjects(e, sub) },
	}
	d.walk(e.Value.Map, block{name: e.Key, fields: f})
	return sp
}

func (d *dec) subjects(e *Entry, sub bool) []string {
	list, ok := d.strings(e)
	if !ok {
		return nil
	}
	for i, s := range list {
		at := e.Value.Pos
		if e.Value.Kind == KindList {
			at = e.Value.List[i].Pos
		}
		subj, queue, hasQueue := strings.Cut(strings.TrimSpace(s), " ")
		switch {
		case hasQueue && !sub:
			d.errf(at, "%s: %q: a queue group is only allowed in subscribe permissions", e.Key, s)
		case !subject.ValidFilter([]byte(subj)):
			d.errf(at, "%s: %q is not a valid subject", e.Key, s)
		case hasQueue && !subject.ValidFilter([]byte(strings.TrimSpace(queue))):
			d.errf(at, "%s: %q: queue group %q is not valid", e.Key, s, strings.TrimSpace(queue))
		}
	}
	return list
}

// allowResponses reads `true` or {max, expires}.
func (d *dec) allowResponses(e *Entry) *auth.ResponsePermission {
	if e.Value.Kind != KindMap {
		b, ok := d.boolean(e)
		if !ok || !b {
			return nil
		}
		return &auth.ResponsePermission{Max: defaultResponseMax, Expires: defaultResponseExpires}
	}
	rp := &auth.ResponsePermission{Max: defaultResponseMax, Expires: defaultResponseExpires}
	f := map[string]field{
		"max":     d.setInt(&rp.Max, 1, math.MaxInt32),
		"expires": d.setDur(&rp.Expires),
	}
	alias(f, "max", "max_msgs", "max_messages", "max_responses")
	alias(f, "expires", "expiration", "ttl")
	d.walk(e.Value.Map, block{name: "allow_responses", fields: f})
	return rp
}

// accounts maps `accounts { NAME { users [...], exports [...], imports
// [...] } }`: each user belongs to its account, and the exports and
// imports become c.Broker.Accounts (checked here, with positions).
func (d *dec) accounts(e *Entry, c *Config) {
	m, ok := d.mapOf(e)
	if !ok {
		return
	}
	at := map[[3]int]Pos{} // {account, export(0)/import(1), index} → where
	for _, acc := range m.Entries {
		if acc.Used && acc.Value.Kind != KindMap {
			continue
		}
		am, ok := d.mapOf(acc)
		if !ok {
			continue
		}
		var users []auth.User
		var defPerm *auth.Permissions
		ba := broker.Account{Name: acc.Key}
		ai := len(c.Broker.Accounts)
		f := map[string]field{
			"users":               func(e *Entry) { users = d.users(e, acc.Key) },
			"default_permissions": func(e *Entry) { defPerm = d.permissions(e) },
			"exports": func(e *Entry) {
				for _, v := range d.listOfMaps(e, "exports: each export") {
					if ex, ok := d.export(v); ok {
						at[[3]int{ai, 0, len(ba.Exports)}] = v.Pos
						ba.Exports = append(ba.Exports, ex)
					}
				}
			},
			"imports": func(e *Entry) {
				for _, v := range d.listOfMaps(e, "imports: each import") {
					if im, ok := d.importOf(v); ok {
						at[[3]int{ai, 1, len(ba.Imports)}] = v.Pos
						ba.Imports = append(ba.Imports, im)
					}
				}
			},
		}
		d.walk(am, block{name: "account " + acc.Key, fields: f, ignored: []string{
			"nkey", "jetstream", "mappings", "maps", "limits", "msg_trace", "trace_dest",
		}})
		for i := range users {
			if users[i].Perms == nil {
				users[i].Perms = defPerm
			}
		}
		c.Auth.Users = append(c.Auth.Users, users...)
		c.Broker.Accounts = append(c.Broker.Accounts, ba)
		at[[3]int{ai, 2, 0}] = acc.KeyPos
	}
	for _, ae := range broker.CheckAccounts(c.Broker.Accounts) {
		i := slices.IndexFunc(c.Broker.Accounts, func(a broker.Account) bool { return a.Name == ae.Account })
		p := e.KeyPos
		if q, ok := at[[3]int{i, 2, 0}]; ok {
			p = q
		}
		for kind, idx := range [2]int{ae.Export, ae.Import} {
			if q, ok := at[[3]int{i, kind, idx}]; ok && idx >= 0 {
				p = q
			}
		}
		what := ""
		switch {
		case ae.Export >= 0:
			what = "export: "
		case ae.Import >= 0:
			what = "import: "
		}
		d.errf(p, "accounts: account %s: %s%s", ae.Account, what, ae.Msg) // p locates it: no index
	}
}

// listOfMaps returns the {} elements of a list, with an error for others.
func (d *dec) listOfMaps(e *Entry, what string) []*Value {
	if e.Value.Kind != KindList {
		d.wrong(e, "a list")
		return nil
	}
	var out []*Value
	for _, v := range e.Value.List {
		if v.Kind != KindMap {
			d.errf(v.Pos, "%s is a {} block, got %s", what, describe(v))
			continue
		}
		out = append(out, v)
	}
	return out
}

// export reads {stream: SUBJECT} or {service: SUBJECT}, with accounts,
// and for a service response_type and response_threshold.
func (d *dec) export(v *Value) (broker.Export, bool) {
	nerrs := len(d.errs)
	var ex broker.Export
	var stream, service string
	f := map[string]field{
		"stream":             d.setStr(&stream),
		"service":            d.setStr(&service),
		"accounts":           func(e *Entry) { ex.Accounts, _ = d.strings(e) },
		"response_type":      d.setStr(&ex.ResponseType),
		"response_threshold": d.setDur(&ex.ResponseThreshold),
	}
	alias(f, "response_type", "response")
	alias(f, "response_threshold", "threshold", "response_max_time", "response_time")
	d.walk(v.Map, block{name: "export", fields: f, ignored: []string{"latency", "account_token_position", "advertise", "allow_trace"}})
	switch {
	case stream != "" && service != "":
		d.errf(v.Pos, "export: give stream or service, not both")
	case stream == "" && service == "":
		d.errf(v.Pos, "export: needs stream or service")
	case service != "":
		ex.Subject, ex.Service = service, true
	default:
		ex.Subject = stream
	}
	return ex, len(d.errs) == nerrs
}

// importOf reads {stream: {account, subject}, prefix | to} or {service:
// {account, subject}, to}. A stream's legacy prefix P makes To "P.SUBJECT".
func (d *dec) importOf(v *Value) (broker.Import, bool) {
	nerrs := len(d.errs)
	var im broker.Import
	var prefix string
	var kinds int
	source := func(service bool) field {
		return func(e *Entry) {
			kinds++
			im.Service = service
			m, ok := d.mapOf(e)
			if !ok {
				return
			}
			f := map[string]field{"account": d.setStr(&im.Account), "subject": d.setStr(&im.Subject)}
			d.walk(m, block{name: e.Key, fields: f})
			if im.Account == "" || im.Subject == "" {
				d.errf(e.Value.Pos, "%s: needs account and subject", e.Key)
			}
		}
	}
	f := map[string]field{
		"stream":  source(false),
		"service": source(true),
		"prefix":  d.setStr(&prefix),
		"to":      d.setStr(&im.To),
	}
	d.walk(v.Map, block{name: "import", fields: f, ignored: []string{"share", "allow_trace"}})
	switch {
	case kinds != 1:
		d.errf(v.Pos, "import: needs exactly one of stream or service")
	case prefix != "" && im.Service:
		d.errf(v.Pos, "import: prefix is for stream imports (a service takes to)")
	case prefix != "" && im.To != "":
		d.errf(v.Pos, "import: give prefix or to, not both")
	case prefix != "":
		im.To = strings.TrimSuffix(prefix, ".") + "." + im.Subject
	}
	return im, len(d.errs) == nerrs
}

// operators reads `operator`: JWTs, or files holding them (relative to
// the configuration file).
func (d *dec) operators(e *Entry, c *Config) {
	list, ok := d.strings(e)
	if !ok {
		return
	}
	for i, s := range list {
		at := e.Value.Pos
		if e.Value.Kind == KindList {
			at = e.Value.List[i].Pos
		}
		if strings.HasPrefix(s, "eyJ") {
			c.Auth.Operators = append(c.Auth.Operators, s)
			continue
		}
		path := s
		if !filepath.IsAbs(path) {
			path = filepath.Join(d.dir, path)
		}
		data, err := d.readFile(path)
		if err != nil {
			d.errf(at, "operator: %q is neither a JWT nor a readable file: %v", s, unwrapPathError(err))
			continue
		}
		c.Auth.Operators = append(c.Auth.Operators, strings.TrimSpace(string(data)))
	}
}

// resolver: busbar has the MEMORY resolver only.
func (d *dec) resolver(e *Entry, c *Config) {
	s, ok := "", false
	if e.Value.Kind != KindMap {
		s, ok = d.str(e)
	}
	if !ok || !strings.EqualFold(s, "MEMORY") && !strings.EqualFold(s, "MEM") {
		d.errf(e.Value.Pos, "resolver: busbar supports only MEMORY (accounts from resolver_preload)")
		return
	}
	c.Auth.Resolver = "MEMORY"
}

func (d *dec) resolverPreload(e *Entry, c *Config) {
	m, ok := d.mapOf(e)
	if !ok {
		return
	}
	c.Auth.ResolverPreload = make(map[string]string, len(m.Entries))
	for _, acc := range m.Entries {
		if s, ok := d.str(acc); ok {
			if !strings.HasPrefix(acc.Key, "A") || len(acc.Key) != 56 {
				d.errf(acc.KeyPos, "resolver_preload: %q is not an account public key (56 characters starting with A)", acc.Key)
				continue
			}
			c.Auth.ResolverPreload[acc.Key] = s
		}
	}
}

// externalJWT reads (busbar) `authorization { jwt { ... } }`.
func (d *dec) externalJWT(e *Entry) *auth.ExternalJWT {
	m, ok := d.mapOf(e)
	if !ok {
		return nil
	}
	j := &auth.ExternalJWT{UserClaim: "sub"}
	f := map[string]field{
		"keys":              func(e *Entry) { j.Keys = d.jwtKeys(e) },
		"issuer":            d.setStr(&j.Issuer),
		"audience":          d.setStr(&j.Audience),
		"user_claim":        d.setStr(&j.UserClaim),
		"permissions_claim": d.setStr(&j.PermissionsClaim),
	}
	d.walk(m, block{name: "jwt", fields: f})
	if len(j.Keys) == 0 {
		d.errf(e.Value.Pos, "jwt: at least one key is required")
	}
	return j
}

func (d *dec) jwtKeys(e *Entry) []auth.JWTKey {
	if e.Value.Kind != KindList {
		d.wrong(e, "a list of keys")
		return nil
	}
	var out []auth.JWTKey
	for _, v := range e.Value.List {
		if v.Kind != KindMap {
			d.errf(v.Pos, "keys: each key is a {} block, got %s", describe(v))
			continue
		}
		var k auth.JWTKey
		f := map[string]field{
			"alg":             d.setStr(&k.Alg),
			"secret":          d.setStr(&k.Secret),
			"base64_secret":   d.setStr(&k.Base64Secret),
			"public_key_file": d.setStr(&k.PublicKeyFile),
		}
		d.walk(v.Map, block{name: "jwt key", fields: f})
		n := 0
		for _, s := range []string{k.Secret, k.Base64Secret, k.PublicKeyFile} {
			if s != "" {
				n++
			}
		}
		hmac := strings.HasPrefix(k.Alg, "HS")
		switch {
		case k.Alg != "HS256" && k.Alg != "RS256" && k.Alg != "ES256" && k.Alg != "EdDSA":
			d.errf(v.Pos, "jwt key: alg %q is not HS256, RS256, ES256 or EdDSA", k.Alg)
		case n != 1:
			d.errf(v.Pos, "jwt key: give exactly one of secret, base64_secret, public_key_file")
		case hmac && k.PublicKeyFile != "":
			d.errf(v.Pos, "jwt key: %s takes secret or base64_secret, not public_key_file", k.Alg)
		case !hmac && k.PublicKeyFile == "":
			d.errf(v.Pos, "jwt key: %s takes public_key_file", k.Alg)
		}
		if k.PublicKeyFile != "" && !filepath.IsAbs(k.PublicKeyFile) {
			k.PublicKeyFile = filepath.Join(d.dir, k.PublicKeyFile)
		}
		out = append(out, k)
	}
	return out
}

func hasNKeys(c *Config) bool {
	for _, u := range c.Auth.Users {
		if u.NKey != "" {
			return true
		}
	}
	return false
}

// tlsMapConns is the connection types whose listener maps client
// certificates to users (tls { verify_and_map }): NATS at the top level,
// MQTT in mqtt {}, and both protocols over WebSocket in websocket {} (the
// listener that verified a certificate decides whether it names a user).
func tlsMapConns(c *Config) auth.ConnTypes {
	var s auth.ConnTypes
	if c.NATS.TLS != nil && c.NATS.TLS.VerifyAndMap {
		s = s.Add(auth.ConnStandard)
	}
	if c.MQTT != nil && c.MQTT.TLS != nil && c.MQTT.TLS.VerifyAndMap {
		s = s.Add(auth.ConnMQTT)
	}
	if w := c.WebSocket; w != nil && w.TLS != nil && !w.NoTLS && w.TLS.VerifyAndMap {
		s = s.Add(auth.ConnWebSocket).Add(auth.ConnMQTTWS)
	}
	return s
}

// checkAuth runs the checks that need the whole file: users without a
// password only when a certificate can name them, duplicate users, and
// no_auth_user naming a user (top level, websocket, mqtt).
func (d *dec) checkAuth(c *Config, noAuthAt Pos) {
	if c.Auth.TLSMapConns == 0 {
		for _, u := range d.noPass {
			d.errf(u.pos, "user %q: needs a password (or nkey, or api_key, or a tls { verify_and_map } listener to map a certificate to it)", u.name)
		}
	}
	names := make(map[string]bool, len(c.Auth.Users))
	for _, u := range c.Auth.Users {
		key := u.Name
		if key == "" {
			key = u.NKey
		}
		if key == "" {
			continue
		}
		if names[key] {
			at, ok := d.pos["authorization.users"]
			if !ok {
				at = d.pos["accounts"]
			}
			d.errf(at, "user %q is defined more than once", key)
		}
		names[key] = true
	}
	check := func(name string, at Pos, where string) {
		if name == "" {
			return
		}
		if len(c.Auth.Operators) > 0 {
			d.errf(at, "%sno_auth_user cannot be used in operator mode", where)
			return
		}
		if !names[name] {
			d.errf(at, "%sno_auth_user %q is not a configured user", where, name)
		}
	}
	check(c.Auth.NoAuthUser, noAuthAt, "")
	if c.WebSocket != nil {
		check(c.WebSocket.NoAuthUser, d.pos["websocket.no_auth_user"], "websocket: ")
	}
	if c.MQTT != nil {
		check(c.MQTT.NoAuthUser, d.pos["mqtt.no_auth_user"], "mqtt: ")
	}
}

// describeUsers is a short description of the auth mode for logs.
func describeAuth(a *auth.Options) string {
	var parts []string
	if n := len(a.Users); n > 0 {
		parts = append(parts, fmt.Sprintf("%d users", n))
	}
	if a.Token != "" {
		parts = append(parts, "token")
	}
	if len(a.Operators) > 0 {
		parts = append(parts, "operator")
	}
	if a.TLSMap || a.TLSMapConns != 0 {
		parts = append(parts, "tls map")
	}
	if a.ExternalJWT != nil {
		parts = append(parts, "jwt")
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
