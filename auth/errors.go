package auth

import "errors"

// ErrConfig wraps every error New finds in Options (the config package
// reports it with the position of the offending key).
var ErrConfig = errors.New("auth: invalid configuration")

// ErrNotAuthorized is what a transport reports to its peer when no
// Authenticator accepted the credentials. An Authenticator returns it (or
// an error wrapping it) to refuse outright: the Chain stops there, and a
// WebSocket upgrade is answered 401 even when it carried nothing busbar
// itself reads.
var ErrNotAuthorized = errors.New("auth: not authorized")

// ErrCannotResolve is what Resolve answers when the Authenticator cannot
// say who an identity is without its credentials (it does not implement
// Resolver, or the identity came from a credential only the client holds:
// a NATS user JWT, an external JWT).
var ErrCannotResolve = errors.New("auth: identity cannot be resolved without credentials")
