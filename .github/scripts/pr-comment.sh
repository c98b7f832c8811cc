#!/usr/bin/env bash
# bash .github/scripts/pr-comment.sh FILE: FILE becomes this pull request's one review comment.
# The comment that starts with src.review's marker is edited in place; without one, it is
# created. Needs `gh` (GH_TOKEN), GITHUB_REPOSITORY and PR (the pull request's number).
set -euo pipefail
body="${1:?usage: pr-comment.sh FILE}"
marker='<!-- src.review -->'
repo="${GITHUB_REPOSITORY:?}"
pr="${PR:?}"
id=$(gh api "repos/$repo/issues/$pr/comments" --paginate --slurp | MARKER="$marker" python3 -c '
import json, os, sys
pages = json.load(sys.stdin)
ids = [c["id"] for page in pages for c in page if c.get("body", "").startswith(os.environ["MARKER"])]
print(ids[0] if ids else "")')
if [ -n "$id" ]; then
  gh api --method PATCH "repos/$repo/issues/comments/$id" -F "body=@$body" > /dev/null
  echo "updated the review comment $id on #$pr"
else
  gh api --method POST "repos/$repo/issues/$pr/comments" -F "body=@$body" > /dev/null
  echo "posted the review comment on #$pr"
fi
