package haproxy

import "testing"

func FuzzParsers(f *testing.F) {
	f.Add("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_port\n3 b 1 n1 127.0.0.1 2 16 1 1 5984", 2)
	f.Add("# pxname,svname,scur,status,weight,check_status,agent_status\nb,n1,0,UP,1,L4OK,\n", 1)
	f.Add("\n\n[3]: No such server.\n\n", 3)
	f.Fuzz(func(t *testing.T, text string, n int) {
		if s, err := parseServersState("b", text); err == nil {
			for _, x := range s {
				if x.Admin != adminFromBits(x.AdminBits) {
					t.Fatalf("inconsistent admin state %+v", x)
				}
			}
		}
		_, _ = parseStat("b", text)
		if n < 0 || n > 1000 {
			return
		}
		if r, err := splitReplies(text, n); err == nil && len(r) != n {
			t.Fatalf("splitReplies returned %d replies, want %d", len(r), n)
		}
	})
}
