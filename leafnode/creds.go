package leafnode

import (
	"encoding/base64"
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// readCreds reads a .creds file: the user JWT and its nkey seed.
func readCreds(path string) (string, nkeys.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("%w: read credentials file: %w", ErrCredentials, err)
	}
	defer clear(raw)
	tok, err := jwt.ParseDecoratedJWT(raw)
	if err != nil || tok == "" {
		return "", nil, fmt.Errorf("%w: %s holds no user JWT", ErrCredentials, path)
	}
	kp, err := jwt.ParseDecoratedNKey(raw)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s holds no valid nkey seed: %w", ErrCredentials, path, err)
	}
	return tok, kp, nil
}

func nkeyFromSeed(seed string) (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, fmt.Errorf("%w: nkey is not a valid seed: %w", ErrCredentials, err)
	}
	return kp, nil
}

// sign fills ci's credentials for remote r and the hub's nonce, as a
// nats-server leaf does: a creds file wins over an nkey; user/password
// (or URL user info) are added in either case.
func sign(ci *connectInfo, r *Remote, user, pass string, hasPass bool, nonce []byte) error {
	switch {
	case r.Credentials != "":
		tok, kp, err := readCreds(r.Credentials)
		if err != nil {
			return err
		}
		defer kp.Wipe()
		sig, err := kp.Sign(nonce)
		if err != nil {
			return fmt.Errorf("%w: sign the nonce: %w", ErrCredentials, err)
		}
		ci.JWT, ci.Sig = tok, base64.RawURLEncoding.EncodeToString(sig)
	case r.NKey != "":
		kp, err := nkeyFromSeed(r.NKey)
		if err != nil {
			return err
		}
		defer kp.Wipe()
		sig, err := kp.Sign(nonce)
		if err != nil {
			return fmt.Errorf("%w: sign the nonce: %w", ErrCredentials, err)
		}
		pub, _ := kp.PublicKey()
		ci.Nkey, ci.Sig = pub, base64.RawURLEncoding.EncodeToString(sig)
	}
	if user != "" {
		ci.User, ci.Pass = user, pass
		if !hasPass {
			ci.Token = user // a lone user name is also a token, as nats-server sends it
		}
	}
	return nil
}
