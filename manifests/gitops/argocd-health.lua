-- Argo CD health check for arena.swarm.dev/SwarmEvaluation (docs/gitops.md).
-- Install it under resource.customizations.health.arena.swarm.dev_SwarmEvaluation in argocd-cm.
-- A SwarmEvaluation is a run to completion, like a Job: Progressing while it provisions, runs or
-- recovers, Healthy once it Succeeded, Degraded when it Failed, Suspended while spec.suspend holds.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function detail(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the swarm-arena operator to pick the evaluation up"
  return hs
end

-- A spec change the operator has not acted on yet: what status says is about an older spec.
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local progress = ""
if status.progress ~= nil and status.progress.episodesTotal ~= nil and status.progress.episodesTotal > 0 then
  progress = " (" .. tostring(status.progress.episodesCompleted or 0) .. "/" ..
      tostring(status.progress.episodesTotal) .. " episodes)"
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  local leader = ""
  if status.results ~= nil and status.results.leaderboard ~= nil and status.results.leaderboard[1] ~= nil then
    leader = "; leader: " .. tostring(status.results.leaderboard[1].policy)
  end
  hs.message = "Succeeded" .. progress .. leader
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = detail(condition(status, "Failed"), "Failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend)" .. progress
elseif phase == "Recovering" then
  hs.status = "Progressing"
  hs.message = "Recovering: " .. detail(condition(status, "Degraded"), "lost Ray actors are restarted from checkpoints") .. progress
elseif phase == "Running" then
  hs.status = "Progressing"
  hs.message = "Running" .. progress
elseif phase == "Pending" or phase == "Provisioning" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. detail(condition(status, "ClusterReady"), "waiting for the Ray cluster")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
