-- POST 100 jobs of 100 bytes per request to /qb.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local n = 0
request = function()
  local jobs = {}
  for i = 1, 100 do
    n = n + 1
    jobs[i] = job(n)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"jobs":[' .. table.concat(jobs, ",") .. ']}')
end
