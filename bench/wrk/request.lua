-- One fixed request, described by the environment: BENCH_METHOD, BENCH_BODY, BENCH_AUTH (an Authorization
-- header value) and BENCH_CTYPE. The URL given to wrk names the path.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE") or "application/x-www-form-urlencoded"
end
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
