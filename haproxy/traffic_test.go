package haproxy

import (
	"strings"
	"testing"
)

// The header of HAProxy 2.6's "show stat" (columns 0-65, the ones parsed and their
// neighbours), as a real 2.6.12 prints it.
const stat26Header = "pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc"

// statLine builds one server line of stat26Header from the columns given.
func statLine(vals map[string]string) string {
	cols := strings.Split(stat26Header, ",")
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = vals[c]
	}
	return strings.Join(out, ",")
}

func TestParseTraffic(t *testing.T) {
	base := map[string]string{"pxname": "b", "svname": "n1", "scur": "0", "status": "UP", "weight": "1"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	httpZero := []string{"hrsp_1xx", "0", "hrsp_2xx", "0", "hrsp_3xx", "0", "hrsp_4xx", "0", "hrsp_5xx", "0", "hrsp_other", "0"}
	for _, tc := range []struct {
		name    string
		header  string
		row     map[string]string
		want    Traffic
		wantErr string
	}{
		{name: "mode http, no request yet: rtime empty", row: with(httpZero...), want: Traffic{HTTP: true}},
		{name: "mode http with traffic", row: with("hrsp_1xx", "0", "hrsp_2xx", "40", "hrsp_3xx", "1", "hrsp_4xx", "2",
			"hrsp_5xx", "7", "hrsp_other", "0", "eresp", "3", "econ", "1", "wretr", "5", "wredis", "2", "qcur", "4", "rtime", "12"),
			want: Traffic{HTTP: true, Responses: 50, Resp5xx: 7, RespErrors: 3, ConnErrors: 1, Retries: 5, Redispatches: 2, QueueCur: 4, RespTimeMs: 12}},
		{name: "mode tcp: empty hrsp columns", row: with("econ", "2", "eresp", "1"),
			want: Traffic{ConnErrors: 2, RespErrors: 1}},
		{name: "an older version without the hrsp columns",
			header: "pxname,svname,scur,status,weight,check_status,agent_status,econ,eresp",
			row:    with("econ", "1"), want: Traffic{ConnErrors: 1}},
		{name: "garbage counter", row: with(append(httpZero, "hrsp_5xx", "x")...), wantErr: "hrsp_5xx"},
		{name: "negative counter", row: with("econ", "-1"), wantErr: "econ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := stat26Header
			line := statLine(tc.row)
			if tc.header != "" {
				header = tc.header
				var vals []string
				for _, c := range strings.Split(header, ",") {
					vals = append(vals, tc.row[c])
				}
				line = strings.Join(vals, ",")
			}
			rows, err := parseStat("b", "# "+header+"\n"+line+"\n")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rows["n1"].traffic; got != tc.want {
				t.Fatalf("traffic %+v, want %+v", got, tc.want)
			}
		})
	}
}
