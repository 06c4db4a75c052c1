package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	gjwt "github.com/golang-jwt/jwt/v5"
)

// externalJWT checks tokens from an outside identity provider (busbar's
// `authorization { jwt {...} }`) with github.com/golang-jwt/jwt/v5.
type externalJWT struct {
	keys      map[string][]gjwt.VerificationKey // by pinned algorithm
	issuer    string
	audience  string
	userClaim string
	permClaim string
}

var extAlgs = map[string]bool{"HS256": true, "RS256": true, "ES256": true, "EdDSA": true}

func newExternalJWT(o *ExternalJWT) (*externalJWT, error) {
	if o == nil {
		return nil, nil
	}
	if len(o.Keys) == 0 {
		return nil, fmt.Errorf("%w: jwt: no keys", ErrConfig)
	}
	e := &externalJWT{keys: map[string][]gjwt.VerificationKey{}, issuer: o.Issuer, audience: o.Audience,
		userClaim: o.UserClaim, permClaim: o.PermissionsClaim}
	if e.userClaim == "" {
		e.userClaim = "sub"
	}
	for i, k := range o.Keys {
		key, err := loadJWTKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: jwt key %d (%s): %w", ErrConfig, i+1, k.Alg, err)
		}
		e.keys[k.Alg] = append(e.keys[k.Alg], key)
	}
	return e, nil
}

func loadJWTKey(k JWTKey) (gjwt.VerificationKey, error) {
	if !extAlgs[k.Alg] {
		return nil, fmt.Errorf("alg must be HS256, RS256, ES256 or EdDSA")
	}
	if k.Alg == "HS256" {
		switch {
		case k.Secret != "":
			return []byte(k.Secret), nil
		case k.Base64Secret != "":
			b, err := base64.StdEncoding.DecodeString(k.Base64Secret)
			if err != nil {
				b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(k.Base64Secret, "="))
			}
			if err != nil {
				return nil, fmt.Errorf("base64_secret: %w", err)
			}
			return b, nil
		}
		return nil, fmt.Errorf("secret or base64_secret required")
	}
	if k.PublicKeyFile == "" {
		return nil, fmt.Errorf("public_key_file required")
	}
	pem, err := os.ReadFile(k.PublicKeyFile)
	if err != nil {
		return nil, err
	}
	switch k.Alg {
	case "RS256":
		return gjwt.ParseRSAPublicKeyFromPEM(pem)
	case "ES256":
		return gjwt.ParseECPublicKeyFromPEM(pem)
	default:
		return gjwt.ParseEdPublicKeyFromPEM(pem)
	}
}

// token picks the credential that may carry the JWT: the NATS jwt or
// auth_token, or an MQTT password.
func (e *externalJWT) token(c *Credentials) string {
	for _, s := range []string{c.JWT, c.Token, c.Password} {
		if strings.Count(s, ".") == 2 {
			return s
		}
	}
	return ""
}

func (e *externalJWT) authenticate(b *builtin, c *Credentials) (*Identity, bool, error) {
	tok := e.token(c)
	if tok == "" {
		return nil, false, nil
	}
	id, err := e.check(b, tok)
	if err != nil {
		b.log.Debug("auth: external JWT refused", "creds", c, "err", err)
		return nil, false, nil
	}
	return id, true, nil
}

func (e *externalJWT) check(b *builtin, tok string) (*Identity, error) {
	opts := []gjwt.ParserOption{gjwt.WithValidMethods(algNames(e.keys))}
	if e.issuer != "" {
		opts = append(opts, gjwt.WithIssuer(e.issuer))
	}
	if e.audience != "" {
		opts = append(opts, gjwt.WithAudience(e.audience))
	}
	claims := gjwt.MapClaims{}
	_, err := gjwt.NewParser(opts...).ParseWithClaims(tok, claims, func(t *gjwt.Token) (any, error) {
		// The key set for the token's algorithm only: a token can never be
		// checked with a key pinned to another algorithm.
		keys := e.keys[t.Method.Alg()]
		if len(keys) == 0 {
			return nil, fmt.Errorf("no key for alg %s", t.Method.Alg())
		}
		return gjwt.VerificationKeySet{Keys: keys}, nil
	})
	if err != nil {
		return nil, err
	}
	name, _ := claims[e.userClaim].(string)
	if name == "" {
		return nil, fmt.Errorf("claim %q missing", e.userClaim)
	}
	id := &Identity{Name: name, Perms: b.defPerm}
	if u := b.users[name]; u != nil {
		id = b.identity(u)
	}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time
	}
	if e.permClaim != "" {
		if raw, ok := claims[e.permClaim]; ok {
			p, err := permsFromClaim(raw)
			if err != nil {
				return nil, fmt.Errorf("claim %q: %w", e.permClaim, err)
			}
			id.Perms = p
		}
	}
	return id, nil
}

func algNames(m map[string][]gjwt.VerificationKey) []string {
	out := make([]string, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	return out
}

// permClaim is the permissions claim: the config's shape in JSON, each
// list either an array or {allow, deny}; allow_responses true or
// {max, expires}.
type permClaim struct {
	Publish        subjList        `json:"publish"`
	Subscribe      subjList        `json:"subscribe"`
	AllowResponses json.RawMessage `json:"allow_responses"`
}

type subjList struct{ sp *SubjectPermission }

func (l *subjList) UnmarshalJSON(b []byte) error {
	var list []string
	if json.Unmarshal(b, &list) == nil {
		l.sp = &SubjectPermission{Allow: list}
		return nil
	}
	var m struct{ Allow, Deny []string }
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	l.sp = &SubjectPermission{Allow: m.Allow, Deny: m.Deny}
	return nil
}

func permsFromClaim(raw any) (*Permissions, error) {
	js, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var pc permClaim
	if err := json.Unmarshal(js, &pc); err != nil {
		return nil, err
	}
	p := &Permissions{Publish: pc.Publish.sp, Subscribe: pc.Subscribe.sp}
	if len(pc.AllowResponses) > 0 {
		var on bool
		var lim struct {
			Max     int    `json:"max"`
			Expires string `json:"expires"`
		}
		switch {
		case json.Unmarshal(pc.AllowResponses, &on) == nil:
			if on {
				p.AllowResponses = &ResponsePermission{}
			}
		case json.Unmarshal(pc.AllowResponses, &lim) == nil:
			d, _ := time.ParseDuration(lim.Expires)
			p.AllowResponses = &ResponsePermission{Max: lim.Max, Expires: d}
		default:
			return nil, fmt.Errorf("allow_responses: want true or {max, expires}")
		}
	}
	return p, p.Validate()
}
