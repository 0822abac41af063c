// Command kstatus reads Kubernetes objects as JSON on stdin (one after
// another) and prints, for each, the status kstatus (sigs.k8s.io/cli-utils)
// computes from it, as Flux and kpt read it: one JSON line
// {"status": "Current"|"InProgress"|"Failed"|..., "message": "..."}.
//
// Built by scripts/kstatus.sh for tests/kstatus.rs.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	dec := json.NewDecoder(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: reading an object: %v\n", err)
			os.Exit(2)
		}
		// apimachinery's decoder keeps integers int64, as unstructured objects need.
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: decoding an object: %v\n", err)
			os.Exit(2)
		}
		res, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: computing the status: %v\n", err)
			os.Exit(1)
		}
		if err := out.Encode(map[string]string{"status": res.Status.String(), "message": res.Message}); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: writing: %v\n", err)
			os.Exit(2)
		}
	}
}
