-- Agent messages can carry a question card, get edited, and collect reactions.
ALTER TABLE room_messages ADD COLUMN card TEXT;                           -- JSON, e.g. {type: 'ask_question', ...}
ALTER TABLE room_messages ADD COLUMN reactions TEXT NOT NULL DEFAULT '[]'; -- JSON [{emoji, by, by_type}]
ALTER TABLE room_messages ADD COLUMN edited_at INTEGER;

-- MCP servers approved for an agent: JSON {"name": {"command", "args", "env"}}, passed to its
-- container, where the runner starts them and offers their tools.
ALTER TABLE agents ADD COLUMN mcp_servers TEXT NOT NULL DEFAULT '{}';
