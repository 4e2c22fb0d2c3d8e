// Package vault encrypts the durable credentials tailgate keeps (an
// environment's OAuth client secret) so that a copy of the database alone
// reveals nothing.
//
// # Overview
//
// Every record is sealed with AES-256-GCM under a fresh random 96-bit nonce.
// The additional data binds the ciphertext to the environment it belongs to
// and to its purpose ("oauth-client-secret"): a ciphertext copied to another
// environment's row, or read back for another purpose, fails to open instead
// of decrypting to a valid secret. Each record names the key that sealed it
// (a key id derived from the key), so keys can be rotated: a [Keyring] holds
// several keys, seals with the active one, and opens with whichever sealed.
//
// Keys come from a key file or an environment variable:
//
//   - [LoadOrCreateKeyFile]: the file holds one raw 32-byte key (as created
//     on first start, mode 0600), or one base64 key per line with the
//     active key first (for rotation: put the new key on top, keep the old
//     ones below until every record has been sealed again). A file that
//     group or others may read is refused.
//   - [KeyringFromEnv]: the variable holds base64 keys separated by commas,
//     active first.
//
// # Usage
//
//	kr, err := vault.LoadOrCreateKeyFile("/var/lib/tailgate/vault.key")
//	sealed, err := kr.Seal([]byte(secret), envID, vault.PurposeOAuthClientSecret)
//	// store sealed.KeyID, sealed.Nonce, sealed.Ciphertext (or sealed.Encode())
//	secret, err := kr.Open(sealed, envID, vault.PurposeOAuthClientSecret)
//
// Errors never contain plaintext or key material.
package vault

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// KeySize is the size of a vault key: AES-256.
const KeySize = 32

// NonceSize is the GCM nonce size: 96 bits, fresh from crypto/rand for
// every record. With random nonces one key stays safe for 2^32 records.
const NonceSize = 12

// PurposeOAuthClientSecret is the purpose of an environment's stored OAuth
// client secret.
const PurposeOAuthClientSecret = "oauth-client-secret"

// PurposeSigningKey is the purpose of one of tailgate's OIDC signing keys
// (package issuer); it is sealed for its key id instead of an environment.
const PurposeSigningKey = "oidc-signing-key"

var (
	// ErrOpen means a sealed record did not open: it was sealed for another
	// environment or purpose, or was changed. Deliberately unspecific.
	ErrOpen = errors.New("vault: sealed record does not open (wrong environment or purpose, or tampered)")
	// ErrUnknownKey means the record was sealed with a key the keyring does
	// not hold (a rotated-out key, or another installation's key).
	ErrUnknownKey = errors.New("vault: record sealed with a key this keyring does not hold")
)

// Sealed is one encrypted record. Store the three fields (or Encode()).
type Sealed struct {
	KeyID      string
	Nonce      []byte
	Ciphertext []byte // includes the GCM tag
}

// String and GoString keep ciphertext out of logs: a sealed record is not
// the secret, but no endpoint or log line should carry it in any form.
func (s Sealed) String() string {
	return fmt.Sprintf("Sealed{KeyID:%s [%d bytes sealed]}", s.KeyID, len(s.Ciphertext))
}

// GoString is String for %#v.
func (s Sealed) GoString() string { return s.String() }

// Keyring holds the vault keys: one active key that seals, and older keys
// that still open what they sealed. It is safe for concurrent use.
type Keyring struct {
	mu     sync.RWMutex
	keys   map[string]cipher.AEAD
	active string
}

// NewKeyring builds a keyring from raw keys, the first active.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("vault: no keys")
	}
	kr := &Keyring{keys: map[string]cipher.AEAD{}}
	for i, k := range keys {
		if err := kr.Add(k, i == 0); err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
	}
	return kr, nil
}

// Add adds a key; active makes it the key that seals from now on. Adding a
// key already held only (optionally) makes it active.
func (kr *Keyring) Add(key []byte, active bool) error {
	if len(key) != KeySize {
		return fmt.Errorf("vault: key is %d bytes, want %d", len(key), KeySize)
	}
	if bytes.Equal(key, make([]byte, KeySize)) {
		return errors.New("vault: key is all zeros")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	id := KeyID(key)
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.keys == nil {
		kr.keys = map[string]cipher.AEAD{}
	}
	kr.keys[id] = aead
	if active || kr.active == "" {
		kr.active = id
	}
	return nil
}

// KeyID names a key without revealing it: the first 8 bytes of a
// domain-separated SHA-256, in hex.
func KeyID(key []byte) string {
	h := sha256.Sum256(append([]byte("tailgate vault key id\x00"), key...))
	return hex.EncodeToString(h[:8])
}

// ActiveKeyID is the id of the key that seals new records.
func (kr *Keyring) ActiveKeyID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.active
}

// KeyIDs lists the ids of every key held.
func (kr *Keyring) KeyIDs() []string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	ids := make([]string, 0, len(kr.keys))
	for id := range kr.keys {
		ids = append(ids, id)
	}
	return ids
}

// Seal encrypts plaintext for one environment and purpose with the active
// key and a fresh random nonce.
func (kr *Keyring) Seal(plaintext []byte, envID, purpose string) (Sealed, error) {
	if envID == "" || purpose == "" {
		return Sealed{}, errors.New("vault: seal needs an environment id and a purpose")
	}
	kr.mu.RLock()
	id, aead := kr.active, kr.keys[kr.active]
	kr.mu.RUnlock()
	if aead == nil {
		return Sealed{}, errors.New("vault: keyring has no active key")
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("vault: nonce: %w", err)
	}
	ct := aead.Seal(nil, nonce, plaintext, additionalData(id, envID, purpose))
	return Sealed{KeyID: id, Nonce: nonce, Ciphertext: ct}, nil
}

// Open decrypts a record sealed for envID and purpose. It fails with
// ErrUnknownKey if the sealing key is not held, and ErrOpen if the record
// belongs elsewhere or was altered.
func (kr *Keyring) Open(s Sealed, envID, purpose string) ([]byte, error) {
	kr.mu.RLock()
	aead := kr.keys[s.KeyID]
	kr.mu.RUnlock()
	if aead == nil {
		return nil, fmt.Errorf("%w (key id %q)", ErrUnknownKey, s.KeyID)
	}
	if len(s.Nonce) != NonceSize {
		return nil, ErrOpen
	}
	pt, err := aead.Open(nil, s.Nonce, s.Ciphertext, additionalData(s.KeyID, envID, purpose))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Reseal opens s and, unless the active key already sealed it, seals it
// again with the active key. Run it over stored records after adding a new
// active key; once none reports resealed, the old key can be dropped.
func (kr *Keyring) Reseal(s Sealed, envID, purpose string) (out Sealed, resealed bool, err error) {
	if s.KeyID == kr.ActiveKeyID() {
		if _, err := kr.Open(s, envID, purpose); err != nil {
			return Sealed{}, false, err
		}
		return s, false, nil
	}
	pt, err := kr.Open(s, envID, purpose)
	if err != nil {
		return Sealed{}, false, err
	}
	defer clear(pt)
	out, err = kr.Seal(pt, envID, purpose)
	return out, err == nil, err
}

// additionalData binds a record to its key id, environment and purpose.
// Each part is length-prefixed so ("a", "bc") and ("ab", "c") differ.
func additionalData(keyID, envID, purpose string) []byte {
	b := []byte("tailgate-vault-v1")
	for _, s := range []string{keyID, envID, purpose} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

const encodingPrefix = "v1"

// Encode renders the record as one printable string,
// "v1.<key id>.<nonce>.<ciphertext>" (base64url without padding), for
// storage in a single column or file.
func (s Sealed) Encode() string {
	enc := base64.RawURLEncoding
	return strings.Join([]string{encodingPrefix, s.KeyID, enc.EncodeToString(s.Nonce), enc.EncodeToString(s.Ciphertext)}, ".")
}

// DecodeSealed parses the output of Sealed.Encode.
func DecodeSealed(s string) (Sealed, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != encodingPrefix || parts[1] == "" {
		return Sealed{}, errors.New("vault: not an encoded sealed record")
	}
	enc := base64.RawURLEncoding
	nonce, err := enc.DecodeString(parts[2])
	if err != nil || len(nonce) != NonceSize {
		return Sealed{}, errors.New("vault: encoded sealed record has a bad nonce")
	}
	ct, err := enc.DecodeString(parts[3])
	if err != nil {
		return Sealed{}, errors.New("vault: encoded sealed record has bad ciphertext")
	}
	return Sealed{KeyID: parts[1], Nonce: nonce, Ciphertext: ct}, nil
}

// LoadOrCreateKeyFile reads the keyring from path, creating the file with
// one fresh random key (mode 0600, parent directories 0700) if it does not
// exist. A file readable or writable by group or others is refused rather
// than used, since anyone who can read it can read every stored secret.
// Creation is atomic: two processes starting at once end up with one key.
func LoadOrCreateKeyFile(path string) (*Keyring, error) {
	kr, err := loadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return kr, err
	}
	if err := createKeyFile(path); err != nil {
		return nil, err
	}
	return loadKeyFile(path)
}

func createKeyFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("vault: create key directory: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("vault: generate key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".vault-key-*")
	if err != nil {
		return fmt.Errorf("vault: create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: create key file: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("vault: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("vault: write key file: %w", err)
	}
	// Link, not rename: it fails if another process created the file
	// meanwhile, and then its key wins.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("vault: create key file: %w", err)
	}
	return nil
}

func loadKeyFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("vault: open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("vault: key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("vault: key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("vault: key file %s has mode %#o; refusing to use a key others can read (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("vault: read key file %s: %w", path, err)
	}
	if len(data) == KeySize {
		kr, err := NewKeyring(data)
		if err != nil {
			return nil, fmt.Errorf("vault: key file %s: %w", path, err)
		}
		return kr, nil
	}
	for _, c := range data {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return nil, fmt.Errorf("vault: key file %s holds no key: %d binary bytes, want exactly %d raw bytes or base64 keys one per line", path, len(data), KeySize)
		}
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, err := decodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("vault: key file %s line %d: %w", path, line, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("vault: key file %s holds no key (want %d raw bytes, or base64 keys one per line)", path, KeySize)
	}
	kr, err := NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("vault: key file %s: %w", path, err)
	}
	return kr, nil
}

// KeyringFromEnv reads base64 keys, comma separated and active first, from
// the environment variable name.
func KeyringFromEnv(name string) (*Keyring, error) {
	v, ok := os.LookupEnv(name)
	if !ok || strings.TrimSpace(v) == "" {
		return nil, fmt.Errorf("vault: environment variable %s is not set", name)
	}
	var keys [][]byte
	for i, s := range strings.Split(v, ",") {
		k, err := decodeKey(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("vault: %s key %d: %w", name, i+1, err)
		}
		keys = append(keys, k)
	}
	kr, err := NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("vault: %s: %w", name, err)
	}
	return kr, nil
}

// GenerateKey returns a new random key in the base64 form the key file and
// environment variable accept.
func GenerateKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// decodeKey accepts standard or URL base64, padded or not. Its errors
// never echo the input.
func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("key is %d bytes, want %d", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("key is not base64")
}
