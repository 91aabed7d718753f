// kh_goverify checks a keyhold log with Go's reference implementation of
// signed notes and transparency logs (golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog), as an outside auditor would.  Used by
// tests/cli/t0205-go-reference.sh; written for this test (not copied).
//
//	kh_goverify -log DIR -logkey VKEY -witkey VKEY -cosigned FILE -release FILE
//
// It verifies the cosigned checkpoint (the log's Ed25519 note signature with
// note.Open, the witness's cosignature/v1 with a verifier written here from
// c2sp.org/tlog-cosignature), recomputes the tree of the log's current
// checkpoint from keyhold's tiles (tlog.TileHashReader checks every tile
// against the signed root), checks the key service's inclusion proof of a
// release with tlog.CheckRecord, compares it with the proof Go computes
// from the tiles, rehashes the logged entry from its entry bundle, and
// prints a consistency proof (Go's tlog.ProveTree) from the cosigned size
// to the current size for keyhold to verify: "size1 size2 root1 root2 proof".
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// cosigVerifier verifies Ed25519 cosignature/v1 lines (algorithm 0x04).
type cosigVerifier struct {
	name string
	hash uint32
	pk   ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	m := []byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t))
	m = append(m, msg...)
	return ed25519.Verify(v.pk, m, sig[8:])
}

func newCosigVerifier(vkey string) (*cosigVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 || len(parts[1]) != 8 {
		return nil, errors.New("malformed cosigner key")
	}
	h, err := strconv.ParseUint(parts[1], 16, 32)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 0x04 {
		return nil, errors.New("cosigner key is not 0x04 || 32-byte Ed25519 key")
	}
	d := sha256.Sum256(append(append([]byte(parts[0]+"\n"), 0x04), raw[1:]...))
	if binary.BigEndian.Uint32(d[:4]) != uint32(h) {
		return nil, errors.New("cosigner key hash does not match")
	}
	return &cosigVerifier{parts[0], uint32(h), ed25519.PublicKey(raw[1:])}, nil
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func parseCheckpoint(text string) (checkpoint, error) {
	var c checkpoint
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return c, errors.New("checkpoint: too few lines")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return c, errors.New("checkpoint: bad size")
	}
	r, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(r) != tlog.HashSize {
		return c, errors.New("checkpoint: bad root")
	}
	c.origin, c.size = lines[0], n
	copy(c.root[:], r)
	return c, nil
}

// keyhold keeps C2SP tlog-tiles paths: Go's tile/8/L/N is keyhold's tile/L/N.
type tileReader struct{ dir string }

func (tileReader) Height() int { return 8 }
func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := strings.TrimPrefix(t.Path(), "tile/8/")
		b, err := os.ReadFile(filepath.Join(r.dir, "tile", p))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}
func (tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// entry i from its entry bundle (uint16 big-endian length || bytes, ...).
func readEntry(dir string, size, i int64) ([]byte, error) {
	t := tlog.Tile{H: 8, L: 0, N: i / 256, W: 256}
	if i/256 == size/256 {
		t.W = int(size % 256)
	}
	p := strings.Replace(strings.TrimPrefix(t.Path(), "tile/8/"), "0/", "entries/", 1)
	b, err := os.ReadFile(filepath.Join(dir, "tile", p))
	if err != nil {
		return nil, err
	}
	for k := int64(0); ; k++ {
		if len(b) < 2 {
			return nil, errors.New("entry bundle too short")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, errors.New("entry bundle truncated")
		}
		if k == i%256 {
			return b[2 : 2+n], nil
		}
		b = b[2+n:]
	}
}

func hashHex(s string) (tlog.Hash, error) {
	var h tlog.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		return h, fmt.Errorf("bad hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}

func run() error {
	logDir := flag.String("log", "", "log directory")
	logKey := flag.String("logkey", "", "log verifier key")
	witKey := flag.String("witkey", "", "witness verifier key")
	cosigned := flag.String("cosigned", "", "cosigned checkpoint file")
	release := flag.String("release", "", "admin unwrap --json output")
	flag.Parse()

	lv, err := note.NewVerifier(*logKey)
	if err != nil {
		return fmt.Errorf("log key: %v", err)
	}
	wv, err := newCosigVerifier(*witKey)
	if err != nil {
		return fmt.Errorf("witness key: %v", err)
	}
	msg, err := os.ReadFile(*cosigned)
	if err != nil {
		return err
	}
	n, err := note.Open(msg, note.VerifierList(lv, wv))
	if err != nil {
		return fmt.Errorf("cosigned checkpoint: %v", err)
	}
	if len(n.Sigs) != 2 {
		return fmt.Errorf("cosigned checkpoint: %d verified signatures, want 2", len(n.Sigs))
	}
	c1, err := parseCheckpoint(n.Text)
	if err != nil {
		return err
	}
	// the same note with the cosignature's timestamp flipped must fail
	if i := bytes.LastIndex(msg, []byte("\n\u2014 "+wv.name+" ")); i >= 0 {
		bad := append([]byte{}, msg...)
		line := bad[i+len("\n\u2014 "+wv.name+" "):]
		end := bytes.IndexByte(line, '\n')
		raw, err := base64.StdEncoding.DecodeString(string(line[:end]))
		if err != nil || len(raw) != 4+8+64 {
			return errors.New("cosignature line: bad base64")
		}
		raw[11] ^= 1
		enc := base64.StdEncoding.EncodeToString(raw)
		copy(line[:end], enc)
		if _, err := note.Open(bad, note.VerifierList(lv, wv)); err == nil {
			return errors.New("a tampered cosignature verified")
		}
	} else {
		return errors.New("no cosignature line by the witness")
	}

	cur, err := os.ReadFile(filepath.Join(*logDir, "checkpoint"))
	if err != nil {
		return err
	}
	n2, err := note.Open(cur, note.VerifierList(lv))
	if err != nil {
		return fmt.Errorf("log checkpoint: %v", err)
	}
	c2, err := parseCheckpoint(n2.Text)
	if err != nil {
		return err
	}
	if c2.origin != c1.origin || c2.size <= c1.size {
		return fmt.Errorf("want a grown log of one origin: %s %d, %s %d", c1.origin, c1.size, c2.origin, c2.size)
	}
	hr := tlog.TileHashReader(tlog.Tree{N: c2.size, Hash: c2.root}, tileReader{*logDir})
	if th, err := tlog.TreeHash(c2.size, hr); err != nil || th != c2.root {
		return fmt.Errorf("tree hash from the tiles: %v", err)
	}
	if th, err := tlog.TreeHash(c1.size, hr); err != nil || th != c1.root {
		return fmt.Errorf("the cosigned root is not the tiles' root at size %d: %v", c1.size, err)
	}

	// the key service's inclusion proof of a release
	var rel struct {
		Index    int64    `json:"index"`
		Size     int64    `json:"size"`
		Root     string   `json:"root"`
		LeafHash string   `json:"leaf_hash"`
		Proof    []string `json:"proof"`
	}
	rb, err := os.ReadFile(*release)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rb, &rel); err != nil {
		return err
	}
	root, err := hashHex(rel.Root)
	if err != nil {
		return err
	}
	leaf, err := hashHex(rel.LeafHash)
	if err != nil {
		return err
	}
	var proof tlog.RecordProof
	for _, s := range rel.Proof {
		h, err := hashHex(s)
		if err != nil {
			return err
		}
		proof = append(proof, h)
	}
	if err := tlog.CheckRecord(proof, rel.Size, root, rel.Index, leaf); err != nil {
		return fmt.Errorf("inclusion proof: %v", err)
	}
	if th, err := tlog.TreeHash(rel.Size, hr); err != nil || th != root {
		return fmt.Errorf("release root is not the tiles' root at size %d", rel.Size)
	}
	gp, err := tlog.ProveRecord(rel.Size, rel.Index, hr)
	if err != nil {
		return err
	}
	if len(gp) != len(proof) {
		return errors.New("Go's inclusion proof differs from keyhold's")
	}
	for i := range gp {
		if gp[i] != proof[i] {
			return errors.New("Go's inclusion proof differs from keyhold's")
		}
	}
	entry, err := readEntry(*logDir, c2.size, rel.Index)
	if err != nil {
		return err
	}
	if tlog.RecordHash(entry) != leaf {
		return errors.New("the entry bundle does not hash to the released leaf")
	}
	if !bytes.HasPrefix(entry, []byte("keyhold-log-entry v1\n")) || !bytes.Contains(entry, []byte("\nop unwrap\n")) {
		return errors.New("the released entry is not a keyhold unwrap entry")
	}

	// a consistency proof by Go, for keyhold to check
	tp, err := tlog.ProveTree(c2.size, c1.size, hr)
	if err != nil {
		return err
	}
	if err := tlog.CheckTree(tp, c2.size, c2.root, c1.size, c1.root); err != nil {
		return fmt.Errorf("consistency: %v", err)
	}
	hs := make([]string, len(tp))
	for i, h := range tp {
		hs[i] = hex.EncodeToString(h[:])
	}
	fmt.Printf("%d %d %s %s %s\n", c1.size, c2.size, hex.EncodeToString(c1.root[:]),
		hex.EncodeToString(c2.root[:]), strings.Join(hs, ","))
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kh_goverify:", err)
		os.Exit(1)
	}
}
