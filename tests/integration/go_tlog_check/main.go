// An independent check of the ledger with Go's reference implementation (golang.org/x/mod/sumdb/note and
// tlog): verify the served checkpoint, rebuild the tree hash from our C2SP tiles (TileHashReader checks every
// tile against the signed root), and compare our inclusion and consistency proofs with the ones Go builds
// from those tiles, then check ours with CheckRecord / CheckTree. Usage: go_tlog_check BASE_URL
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base string

func get(path string) []byte {
	resp, err := http.Get(base + path)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		panic(fmt.Sprintf("%s: %d %s", path, resp.StatusCode, b))
	}
	return b
}

func nPath(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}

type reader struct{}

func (reader) Height() int { return 8 }
func (reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := fmt.Sprintf("/ledger/tile/%d/%s", t.L, nPath(t.N))
		if t.W != 256 {
			p += fmt.Sprintf(".p/%d", t.W)
		}
		out[i] = get(p)
	}
	return out, nil
}
func (reader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func hashes(list []string) []tlog.Hash {
	out := make([]tlog.Hash, len(list))
	for i, s := range list {
		b, _ := base64.StdEncoding.DecodeString(s)
		copy(out[i][:], b)
	}
	return out
}

func main() {
	base = os.Args[1]
	vkey := strings.TrimSpace(string(get("/ledger/key")))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		panic(err)
	}
	msg := get("/ledger/checkpoint")
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		panic(err)
	}
	lines := strings.Split(n.Text, "\n")
	size, _ := strconv.ParseInt(lines[1], 10, 64)
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		panic(err)
	}
	tree := tlog.Tree{N: size, Hash: root}
	hr := tlog.TileHashReader(tree, reader{})
	th, err := tlog.TreeHash(size, hr)
	if err != nil || th != root {
		panic(fmt.Sprint("tree hash from tiles differs ", err))
	}
	checked := 0
	for _, idx := range []int64{0, 1, 255, 256, 4095, 65535, 65536, size / 2, size - 2, size - 1} {
		var ours struct {
			LeafHash string   `json:"leaf_hash"`
			Proof    []string `json:"inclusion_proof"`
		}
		json.Unmarshal(get(fmt.Sprintf("/ledger/proof/inclusion?index=%d&size=%d", idx, size)), &ours)
		leaf := hashes([]string{ours.LeafHash})[0]
		goProof, err := tlog.ProveRecord(size, idx, hr)
		if err != nil {
			panic(err)
		}
		if fmt.Sprint(goProof) != fmt.Sprint(tlog.RecordProof(hashes(ours.Proof))) {
			panic(fmt.Sprint("inclusion proof differs at ", idx))
		}
		if err := tlog.CheckRecord(hashes(ours.Proof), size, root, idx, leaf); err != nil {
			panic(err)
		}
		checked++
	}
	for _, old := range []int64{1, 2, 3, 256, 1000, 65536, 65537, size / 3, size - 1} {
		var ours struct {
			OldRoot string   `json:"old_root"`
			Proof   []string `json:"consistency_proof"`
		}
		json.Unmarshal(get(fmt.Sprintf("/ledger/proof/consistency?old=%d&new=%d", old, size)), &ours)
		goProof, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			panic(err)
		}
		if fmt.Sprint(goProof) != fmt.Sprint(tlog.TreeProof(hashes(ours.Proof))) {
			panic(fmt.Sprint("consistency proof differs at ", old))
		}
		if err := tlog.CheckTree(hashes(ours.Proof), size, root, old, hashes([]string{ours.OldRoot})[0]); err != nil {
			panic(err)
		}
		checked++
	}
	fmt.Printf("Go note+tlog: checkpoint of size %d verified, tree hash from our tiles matches, %d proofs identical and accepted\n", size, checked)
}
