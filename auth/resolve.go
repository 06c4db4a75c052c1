package auth

import (
	"context"
	"errors"
)

// Resolver is implemented by an Authenticator that can tell who a known
// identity is now, without its credentials: what the configuration in
// effect says of the user name (and account) an identity was given when it
// authenticated. The broker asks it for sessions that outlive their
// connection (MQTT persistent sessions restored from the Store, and
// offline ones at a reload), so they follow the current permissions and
// account.
//
// Resolve returns the current identity and ok=true; ok=false with a nil
// error when the user is gone (the session ends); ErrCannotResolve when it
// cannot tell.
type Resolver interface {
	Resolve(ctx context.Context, id *Identity, ct ConnType) (cur *Identity, ok bool, err error)
}

// Resolve asks a, when it is a Resolver, who id is now; ErrCannotResolve
// otherwise.
func Resolve(ctx context.Context, a Authenticator, id *Identity, ct ConnType) (*Identity, bool, error) {
	r, ok := a.(Resolver)
	if !ok {
		return nil, false, ErrCannotResolve
	}
	return r.Resolve(ctx, id, ct)
}

// Resolve of a Chain: the first member that knows the identity answers. A
// member that cannot resolve makes "gone" uncertain, so the chain then
// answers ErrCannotResolve instead of ok=false.
func (ch chain) Resolve(ctx context.Context, id *Identity, ct ConnType) (*Identity, bool, error) {
	unsure := false
	for _, a := range ch {
		cur, ok, err := Resolve(ctx, a, id, ct)
		switch {
		case errors.Is(err, ErrCannotResolve):
			unsure = true
		case err != nil || ok:
			return cur, ok, err
		}
	}
	if unsure {
		return nil, false, ErrCannotResolve
	}
	return nil, false, nil
}

// Resolve of ByConnType asks the authenticator of ct's type.
func (b byConn) Resolve(ctx context.Context, id *Identity, ct ConnType) (*Identity, bool, error) {
	if a, ok := b.per[ct]; ok {
		return Resolve(ctx, a, id, ct)
	}
	if b.fallback == nil {
		return &Identity{}, true, nil
	}
	return Resolve(ctx, b.fallback, id, ct)
}

// Resolve of the built-in Authenticator looks the identity's name up
// among the configured users (by name, then by NKEY) and the token
// identity. Operator-mode and external-JWT identities exist only with the
// client's token: ErrCannotResolve.
func (b *builtin) Resolve(_ context.Context, id *Identity, ct ConnType) (*Identity, bool, error) {
	if id == nil || id.Name == "" {
		return nil, false, ErrCannotResolve
	}
	u := b.users[id.Name]
	if u == nil {
		u = b.nkeys[id.Name]
	}
	if u != nil {
		if !u.ConnTypes.Allows(ct) {
			return nil, false, nil
		}
		return b.identity(u), true, nil
	}
	if id.Name == "token" && (id.Account == "" || id.Account == "$G") && b.token != "" {
		return &Identity{Name: "token", Perms: b.defPerm}, true, nil
	}
	if b.op != nil || b.ext != nil {
		return nil, false, ErrCannotResolve
	}
	return nil, false, nil
}
