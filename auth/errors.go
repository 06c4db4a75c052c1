package auth

import "errors"

// ErrConfig wraps every error New finds in Options (the config package
// reports it with the position of the offending key).
var ErrConfig = errors.New("auth: invalid configuration")
