#!/usr/bin/env python3
"""Generates tests/data/chat_templates.json: chat templates of the major model
families rendered over a set of conversations by Python jinja2, set up exactly
as transformers' apply_chat_template sets it up (ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loopcontrols; raise_exception,
strftime_now and transformers' tojson). tests/unit/chat_template_test.cpp
checks that libllm's interpreter renders every case identically.

Besides the family templates, the file holds small templates exercising single
interpreter features ("interp" cases), also rendered by jinja2.

Needs only jinja2 (pip install jinja2); transformers is not required.
Usage: scripts/gen_chat_template_cases.py [output.json]
"""

import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

# strftime_now() reports this time in the tests (the C++ test fixes the same).
FIXED_NOW = datetime(2024, 7, 26, 12, 0, 0)


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker without the tracking: {% generation %}
    renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def make_env():
    """The environment transformers' _compile_jinja_template builds."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers overrides jinja2's tojson: no HTML escaping.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


# ---- published chat templates, by family ------------------------------------------------
# Reproduced from the models' tokenizer_config.json files.

TEMPLATES = {}

# Llama 2 (meta-llama/Llama-2-7b-chat-hf)
TEMPLATES["llama2"] = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# Llama 3 (meta-llama/Meta-Llama-3-8B-Instruct)
TEMPLATES["llama3"] = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Llama 3.1 (meta-llama/Llama-3.1-8B-Instruct): date, tools and ipython preamble
TEMPLATES["llama3.1"] = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# Llama 3.2 (meta-llama/Llama-3.2-1B-Instruct): as 3.1, with today's date from strftime_now
TEMPLATES["llama3.2"] = TEMPLATES["llama3.1"].replace(
    """{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}""",
    """{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}""",
)

# Mistral v0.1 (mistralai/Mistral-7B-Instruct-v0.1)
TEMPLATES["mistral-v0.1"] = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# Mistral v0.2 style (mistralai/Mistral-7B-Instruct-v0.2, later revision): optional system message
TEMPLATES["mistral-v0.2"] = r"""{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\n\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# Mistral v0.3 (mistralai/Mistral-7B-Instruct-v0.3): tools, tool calls, namespace-based alternation check
TEMPLATES["mistral-v0.3"] = r"""{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

# Qwen2 (Qwen/Qwen2-7B-Instruct): ChatML with a default system prompt
TEMPLATES["qwen2"] = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2.5 (Qwen/Qwen2.5-7B-Instruct): ChatML with tools and tool calls
TEMPLATES["qwen2.5"] = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# Plain ChatML (the Hugging Face default ChatML template, e.g. OpenHermes)
TEMPLATES["chatml"] = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Phi-3 (microsoft/Phi-3-mini-4k-instruct, later revision; Phi-3.5-mini-instruct)
TEMPLATES["phi3"] = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Phi-3 (microsoft/Phi-3-mini-4k-instruct, first release)
TEMPLATES["phi3-original"] = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}"
)

# Gemma (google/gemma-7b-it, gemma-2-9b-it): raise_exception for the system role
TEMPLATES["gemma"] = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

# Gemma 3 (google/gemma-3-4b-it): system prefix folded into the first turn, multimodal content lists
TEMPLATES["gemma3"] = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

# SmolLM (HuggingFaceTB/SmolLM-135M-Instruct)
TEMPLATES["smollm"] = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# SmolLM2 (HuggingFaceTB/SmolLM2-1.7B-Instruct): ChatML with a default system prompt
TEMPLATES["smollm2"] = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# TinyLlama / Zephyr (TinyLlama/TinyLlama-1.1B-Chat-v1.0, HuggingFaceH4/zephyr-7b-beta):
# multi-line, relies on trim_blocks/lstrip_blocks
TEMPLATES["zephyr"] = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

SPECIAL_TOKENS = {
    "llama2": ("<s>", "</s>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-v0.1": ("<s>", "</s>"),
    "mistral-v0.2": ("<s>", "</s>"),
    "mistral-v0.3": ("<s>", "</s>"),
    "qwen2": ("", "<|im_end|>"),
    "qwen2.5": ("", "<|im_end|>"),
    "chatml": ("<s>", "</s>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "phi3-original": ("<s>", "<|endoftext|>"),
    "gemma": ("<bos>", "<eos>"),
    "gemma3": ("<bos>", "<eos>"),
    "smollm": ("<|im_start|>", "<|im_end|>"),
    "smollm2": ("<|im_start|>", "<|im_end|>"),
    "zephyr": ("<s>", "</s>"),
}


def msg(role, content):
    return {"role": role, "content": content}


# Conversations with plain role/content messages: what the C API can express.
CONVERSATIONS = {
    "user": [msg("user", "Hello!")],
    "system_user": [msg("system", "You are a pirate."), msg("user", "Where is the treasure?")],
    "multi_turn": [msg("user", "Hi"), msg("assistant", "Hello, how can I help?"), msg("user", "Tell me a joke.")],
    "system_multi_turn": [
        msg("system", "Be brief."),
        msg("user", "What is 2+2?"),
        msg("assistant", "4"),
        msg("user", "And 3+3?"),
    ],
    "unicode": [
        msg("user", "héllo wörld — 世界 🌍 ✓"),
        msg("assistant", "Ça va? Ünïcödé ñ ß"),
        msg("user", "日本語で答えて"),
    ],
    "jinja_text": [msg("user", "{{ x }} {% if y %}z{% endif %} {# c #} }} {{")],
    "whitespace": [msg("user", "  padded \n\n"), msg("assistant", "\tanswer  "), msg("user", "\n")],
    "empty_content": [msg("user", "")],
    "system_only": [msg("system", "Only a system prompt.")],
    "assistant_first": [msg("assistant", "I start."), msg("user", "Then me.")],
    "two_users": [msg("user", "one"), msg("user", "two")],
    "tool_role": [msg("user", "Weather?"), msg("assistant", "Checking."), msg("tool", "{\"temp\": 21}")],
    "empty": [],
}

# Richer inputs (tools, tool calls, content lists, extra variables): rendered
# through the interpreter directly, since the C API passes role/content only.
RICH_CASES = [
    (
        "llama3.1",
        "tools_in_user_message",
        [msg("system", "Sys."), msg("user", "What's the weather in Paris?")],
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Get the weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string", "description": "City name"}},
                            "required": ["city"],
                        },
                    },
                }
            ]
        },
    ),
    (
        "llama3.1",
        "tools_in_system",
        [msg("user", "Hi")],
        {"tools": [{"name": "f", "parameters": {}}], "tools_in_user_message": False, "date_string": "01 Jan 2025"},
    ),
    (
        "llama3.1",
        "tool_call",
        [
            msg("user", "Weather?"),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 2}}}],
            },
            msg("ipython", "sunny"),
        ],
        {},
    ),
    (
        "llama3.1",
        "builtin_tool_call",
        [
            msg("user", "Search"),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "brave_search", "arguments": {"query": "x", "lang": "en"}}}],
            },
        ],
        {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]},
    ),
    (
        "llama3.1",
        "two_tool_calls",
        [{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "a", "arguments": {}}}] * 2}],
        {},
    ),
    (
        "mistral-v0.3",
        "tools",
        [msg("user", "first"), msg("assistant", "ok"), msg("user", "Weather in Paris?")],
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Get the weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        "return": {"type": "string"},
                    },
                }
            ]
        },
    ),
    (
        "mistral-v0.3",
        "tool_calls",
        [
            msg("user", "Weather?"),
            {
                "role": "assistant",
                "tool_calls": [{"id": "abcdefghi", "function": {"name": "get_weather", "arguments": {"city": "P"}}}],
            },
            {"role": "tool", "tool_call_id": "abcdefghi", "content": {"content": 21}},
            msg("assistant", "It is 21."),
        ],
        {},
    ),
    (
        "mistral-v0.3",
        "bad_tool_id",
        [msg("user", "x"), {"role": "assistant", "tool_calls": [{"id": "short", "function": {"name": "f"}}]}],
        {},
    ),
    (
        "qwen2.5",
        "tools",
        [msg("user", "Weather?")],
        {"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"city": "str"}}}]},
    ),
    (
        "qwen2.5",
        "tool_calls",
        [
            msg("system", "Sys"),
            msg("user", "Weather?"),
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                    {"name": "get_time", "arguments": {"tz": "CET"}},
                ],
            },
            msg("tool", "21C"),
            msg("tool", "12:00"),
            msg("assistant", "Done."),
        ],
        {},
    ),
    (
        "gemma3",
        "content_lists",
        [
            {"role": "system", "content": [{"type": "text", "text": "Sys prompt"}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  Describe.  "}]},
        ],
        {},
    ),
    ("gemma3", "invalid_content", [{"role": "user", "content": 42}], {}),
    ("llama3.2", "date_string_given", [msg("user", "Hi")], {"date_string": "02 Feb 2022"}),
]

# Single features of the interpreter: (name, template, variables).
INTERP_CASES = [
    ("print_literals", "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 'a' }} {{ \"b\" }} {{ true }} {{ none }} {{ [1, 'x'] }}", {}),
    ("floats", "{{ 1.0 }} {{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 1e100 }} {{ 2.5e-3 }}", {}),
    ("int_literals", "{{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 00 }}", {}),
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 % 2 }} {{ -7.5 // 2 }}", {}),
    ("arith_mixed", "{{ 1 + 2.5 }} {{ true + 1 }} {{ 3 * 'ab' }} {{ [1] * 3 }} {{ 'x' * 0 }}|{{ 10 / 5 }}", {}),
    ("precedence", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -1 ** 2 }} {{ 1 + 2 is number }} {{ not 1 == 2 }}", {}),
    ("concat", "{{ 'a' ~ 1 ~ none ~ 1.5 ~ true ~ [1] ~ undefined_var }}", {}),
    ("string_escapes", "{{ 'a\\tb\\\\c\\'d\\x41\\u00e9\\101\\q' }}|{{ \"q\\\"q\" }}", {}),
    ("adjacent_strings", "{{ 'a' 'b' \"c\" }}", {}),
    ("compare", "{{ 1 < 2 < 3 }} {{ 1 < 2 > 3 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 'a' != 'a' }}", {}),
    ("in_ops", "{{ 'b' in 'abc' }} {{ 1 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'x' in undefined_var }}", {}),
    ("logic", "{{ true and 'x' }}|{{ 0 or 'y' }}|{{ '' and 1 }}|{{ none or none }}|{{ not '' }}", {}),
    ("condexpr", "{{ 'a' if true else 'b' }} {{ 'a' if false else 'b' if false else 'c' }} [{{ 'x' if false }}]", {}),
    ("tuples", "{{ (1,) }} {{ () }} {{ 1, 2 }} {{ (1, 'a') }}", {}),
    ("dict_literal", "{{ {'a': 1, 'b': [2]} }} {{ {'a': 1}['a'] }} {{ {'a': {'b': 2}}.a.b }} {{ {1: 'x', 'a': 1, 1: 'y'} }}", {}),
    ("attr_vs_item", "{{ d.items is callable }}|{{ d['x'] }}|{{ d.x }}|{{ d.missing }}|{{ d['missing'] }}",
     {"d": {"x": 1}}),
    ("dict_methods", "{{ d.get('x') }} {{ d.get('y') }} {{ d.get('y', 5) }} {% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"
     "{{ d.keys()|list }} {{ d.values()|list }}", {"d": {"x": 1, "z": [2]}}),
    ("subscripts", "{{ s[0] }}{{ s[-1] }}{{ s[1:] }}{{ s[:-1] }}{{ s[::-1] }}{{ s[::2] }}|{{ l[1] }}{{ l[-1] }}{{ l[1:] }}{{ l[5] }}|{{ s[10] }}|{{ l.0 }}",
     {"s": "héllo", "l": [1, 2, 3]}),
    ("undefined_behaviour", "[{{ u }}][{{ u|default('d') }}][{{ u is defined }}][{{ u|length }}][{{ u|list }}][{{ u|trim }}][{{ u == u }}]"
     "{% for x in u %}x{% else %}empty{% endfor %}", {}),
    ("undefined_attr_error", "{{ u.x }}", {}),
    ("undefined_add_error", "{{ u + 'x' }}", {}),
    ("none_attr", "[{{ none.x }}][{{ 'abc'.x }}][{{ 1.x }}]", {}),
    ("str_methods", "{{ '  x '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a '.lstrip() }}|{{ ' a '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|"
     "{{ ' a  b '.split() }}|{{ 'a b c'.split(none, 1) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ 'abc'.startswith('ab') }}|"
     "{{ 'abc'.endswith(('x', 'c')) }}|{{ 'aBc'.upper() }}{{ 'aBc'.lower() }}|{{ \"they're bill's\".title() }}|"
     "{{ 'hELLO wORLD'.capitalize() }}|{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.replace('', '-') }}|{{ 'héllo'.find('l') }}|"
     "{{ 'abab'.count('ab') }}|{{ '-'.join(['a', 'b']) }}|{{ 'a\\nb\\r\\nc'.splitlines() }}|{{ 'prefix_x'.removeprefix('prefix_') }}", {}),
    ("unicode_case", "{{ 'éCOLE ñ'|upper }} {{ 'ÉCOLE'|lower }} {{ 'élan vital'|title }} {{ 'élan'|capitalize }}", {}),
    ("filters_basic", "{{ 'Hello'|length }} {{ [1, 2]|length }} {{ {'a': 1}|count }} {{ 'abc'|upper }} {{ 'ABC'|lower }} "
     "{{ 'a-b c(d'|title }} {{ 'hELLO'|capitalize }} {{ '  t  '|trim }}|{{ 'xax'|trim('x') }}", {}),
    ("filters_default", "{{ u|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ none|default(2) }} {{ u|d('z') }}", {}),
    ("filters_first_last", "{{ [1, 2]|first }} {{ [1, 2]|last }} {{ 'abc'|first }} {{ 'abc'|last }} [{{ []|first }}] {{ {'a': 1, 'b': 2}|last }}", {}),
    ("filters_join", "{{ [1, 'a', none]|join('-') }} {{ ['a', 'b']|join }} {{ 'abc'|join(',') }} {{ [{'n': 'x'}, {'n': 'y'}]|join(', ', attribute='n') }}", {}),
    ("filters_numbers", "{{ 3.7|int }} {{ '12'|int }} {{ ' 42 '|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '3.5'|int }} {{ '0x1A'|int(0, 16) }} "
     "{{ true|int }} {{ none|int }} {{ '2.5'|float }} {{ 2|float }} {{ 'x'|float }} {{ -3|abs }} {{ 2.5|round }} {{ 3.14159|round(2) }} "
     "{{ 2.7|round(0, 'floor') }} {{ 2.1|round(0, 'ceil') }}", {}),
    ("filters_string", "{{ 1.5|string }} {{ [1]|string }} {{ none|string }} {{ 'a'|string }}", {}),
    ("filters_replace", "{{ 'hello'|replace('l', 'L') }} {{ 'aaa'|replace('a', 'b', 1) }}", {}),
    ("filters_items", "{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}{{ v }}{% endfor %} {{ {'a': 1}|items|list }}", {}),
    ("filters_list_sort", "{{ 'abc'|list }} {{ {'x': 1}|list }} {{ [3, 1, 2]|sort }} {{ ['b', 'A', 'a']|sort }} {{ [3, 1, 2]|sort(reverse=true) }} "
     "{{ [{'k': 2}, {'k': 1}]|sort(attribute='k') }} {{ ['b', 'A']|sort(case_sensitive=true) }}", {}),
    ("filters_reverse", "{{ 'abc'|reverse }} {{ [1, 2, 3]|reverse|list }} {{ [1, 2, 3]|select('odd')|reverse }}", {}),
    ("filters_unique_minmax_sum", "{{ [1, 2, 1, 3]|unique|list }} {{ ['a', 'A', 'b']|unique|list }} {{ [3, 1, 5]|max }} {{ [3, 1, 5]|min }} "
     "{{ ['b', 'C', 'a']|max }} {{ [1, 2, 3]|sum }} {{ [{'v': 1}, {'v': 2}]|sum(attribute='v') }} {{ [1]|sum(start=10) }}", {}),
    ("filters_select", "{{ [1, 2, 3, 4]|select('odd')|list }} {{ [1, 2, 3]|reject('odd')|list }} {{ [0, 1, '', 'a']|select|list }} "
     "{{ [1, 5, 9]|select('gt', 4)|list }} {{ ['a', 'b']|reject('equalto', 'a')|list }} {{ [1, 2, 3]|select('divisibleby', 3)|list }}", {}),
    ("filters_selectattr", "{{ msgs|selectattr('role', 'equalto', 'user')|list }} {{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='content')|list }} "
     "{{ msgs|selectattr('tool')|list }} {{ msgs|map(attribute='nope', default='-')|list }} {{ msgs|map(attribute='role')|join(',') }}",
     {"msgs": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool": 1}]}),
    ("filters_map", "{{ ['a', 'b']|map('upper')|list }} {{ [1, 2]|map('string')|join }} {{ [' a ', 'b ']|map('trim')|list }} "
     "{{ ['x']|map('replace', 'x', 'y')|list }}", {}),
    ("filters_dictsort", "{{ {'b': 1, 'a': 2, 'C': 0}|dictsort }} {{ {'b': 1, 'a': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}", {}),
    ("filters_indent", "[{{ 'a\\nb\\n\\nc'|indent }}][{{ 'a\\nb'|indent(2, true) }}][{{ 'a\\n\\nb'|indent(2, blank=true) }}][{{ 'x'|indent('> ', first=true) }}]", {}),
    ("filters_wordcount_escape", "{{ 'hello big world'|wordcount }} {{ '<a href=\"x\">&'|e }} {{ '<b>'|escape|length }} {{ ('<b>'|safe) ~ 'ok' }}", {}),
    ("filters_attr", "{% set ns = namespace(x=5) %}{{ ns|attr('x') }} [{{ {'x': 1}|attr('x') }}] {{ {'x': 1}|attr('items') is callable }}", {}),
    ("tojson", "{{ {'a': 'é\"\\n', 'b': [1, 2.5, none, true], 'c': {}}|tojson }} {{ 'x'|tojson }} {{ [1, [2, [3]]]|tojson }} "
     "{{ {'a': [1, {'b': 2}], 'e': []}|tojson(indent=2) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }} {{ 'é'|tojson(ensure_ascii=true) }} "
     "{{ (1, 2)|tojson }} {{ {1: 2, 'x': 1.0}|tojson }} {{ [1, 2]|tojson(separators=(',', ':')) }} {{ 'a\\u0001\\u007f\\u2028'|tojson }}", {}),
    ("tojson_indent_string", "{{ {'a': [1]}|tojson(indent='\\t') }}", {}),
    ("tests", "{{ 1 is number }} {{ true is number }} {{ 1.5 is float }} {{ 1 is integer }} {{ true is integer }} {{ 'a' is string }} "
     "{{ {} is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ u is iterable }} {{ [] is sequence }} "
     "{{ none is none }} {{ true is boolean }} {{ true is true }} {{ 1 is true }} {{ false is false }} {{ 3 is odd }} {{ 4 is even }} "
     "{{ 9 is divisibleby 3 }} {{ 10 is divisibleby(4) }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ range is callable }} "
     "{{ 1 is eq 1 }} {{ 1 is ne 1 }} {{ 1 is lt 2 }} {{ 2 is ge 2 }} {{ 'a' is in 'abc' }} {{ u is undefined }} {{ none is sameas none }} "
     "{{ x is not defined }} {{ not x is defined }} {{ 1 is equalto 1 }}", {}),
    ("ns_mapping", "{% set ns = namespace(a=1) %}{{ ns is mapping }} {{ ns.a }} {{ ns['a'] }} [{{ ns.b }}]", {}),
    ("for_loop_vars", "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
     "{{ loop.first }}{{ loop.last }}{{ loop.length }}[{{ loop.previtem }}|{{ loop.nextitem }}]{{ loop.cycle('o', 'e') }};{% endfor %}", {}),
    ("for_filter_else", "{% for i in [1, 2, 3, 4] if i is even %}{{ i }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}"
     "{% for i in [] %}x{% else %}empty{% endfor %}{% for i in [1] if false %}x{% else %}none{% endfor %}", {}),
    ("for_unpack", "{% for a, b in [[1, 2], (3, 4), 'xy'] %}{{ a }}{{ b }}{% endfor %}{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}"
     "{% for c in 'hé' %}[{{ c }}]{% endfor %}", {}),
    ("for_nested_loop", "{% for i in [1, 2] %}{% for j in [3] %}{{ loop.index }}{{ loop.depth }}{% endfor %}{{ loop.index }}{{ loop.depth0 }}{% endfor %}", {}),
    ("for_scoping", "{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"
     "{% for i in [1] %}{{ i }}{% endfor %}[{{ i }}]{% if true %}{% set y = 2 %}{% endif %}{{ y }}", {}),
    ("break_continue", "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("namespace", "{% set ns = namespace(count=0, items=[]) %}{% for i in range(4) %}{% set ns.count = ns.count + i %}"
     "{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.count }} {{ ns.items }}", {}),
    ("set_tuple_and_block", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}Block {{ a }}{% endset %}[{{ t }}]"
     "{% set u2 | upper %}shout{% endset %}{{ u2 }}", {}),
    ("set_messages_shadow", "{% set messages = messages[1:] %}{{ messages|length }}", {"messages": [1, 2, 3]}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} "
     "{{ greet(name='C', punct='.') }} [{{ greet() }}]", {}),
    ("macro_recursion", "{% macro count(n) %}{{ n }}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}", {}),
    ("macro_arity_error", "{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", {}),
    ("with_filter_blocks", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]{% filter upper %}up {{ 'x' }}{% endfilter %}", {}),
    ("raw_block", "a{% raw %}{{ not parsed }} {% if %}{% endraw %}b", {}),
    ("comments", "a{# one #}b {#- two -#} c\n{# three #}\nd", {}),
    ("ws_trim_blocks", "{% if true %}\nline\n{% endif %}\nafter", {}),
    ("ws_lstrip_blocks", "  {% if true %}\n  indented\n  {% endif %}\n  {{ 'v' }}  \nend", {}),
    ("ws_minus", "a   {{- 'b' -}}   c\n\n{%- if true -%}\n  d  \n{%- endif -%}\n  e", {}),
    ("ws_plus", "  {%+ if true %}x{% endif %}\n{% if true +%}\ny{% endif %}", {}),
    ("ws_crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc\r\n", {}),
    ("ws_trailing_newline", "text\n", {}),
    ("ws_unicode_space", "x \u3000{%- if true %}y{% endif %}", {}),
    ("ws_comment_lstrip", "a\n    {# c #}\nb", {}),
    ("ws_variable_no_lstrip", "a\n    {{ 'v' }}\nb", {}),
    ("ws_dict_in_print", "{{ {'a': {'b': 1}} }}", {}),
    ("string_with_tags", "{{ '}} %} #}' }}{% if '%}' %}ok{% endif %}", {}),
    ("range_fn", "{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }} {{ range(3)|length }}", {}),
    ("dict_fn", "{{ dict(a=1, b='x') }}", {}),
    ("raise_exception", "{{ raise_exception('custom failure: ' ~ 42) }}", {}),
    ("strftime_now", "{{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %j') }} {{ strftime_now('%d %B %Y') }}", {}),
    ("type_error_concat", "{{ 'a' + 1 }}", {}),
    ("zero_division", "{{ 1 // 0 }}", {}),
    ("not_iterable", "{% for x in 5 %}{% endfor %}", {}),
    ("unpack_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}", {}),
    ("set_attr_error", "{% set x = 1 %}{% set x.y = 2 %}", {}),
    ("range_too_big", "{{ range(200000)|length }}", {}),
    ("unknown_filter", "{{ 'x'|nosuchfilter }}", {}),
    ("unknown_tag", "{% frobnicate %}", {}),
    ("unclosed_block", "{% if true %}x", {}),
    ("unclosed_print", "{{ 'x' ", {}),
    ("bad_expression", "{{ 1 + }}", {}),
    ("list_methods_unsafe", "{{ [].append(1) }}", {}),
    ("in_type_error", "{{ 1 in 'abc' }}", {}),
    ("compare_type_error", "{{ 1 < 'a' }}", {}),
    ("call_undefined", "{{ nope() }}", {}),
    ("generation_block", "a{% generation %}b{{ 1 }}{% endgeneration %}c", {}),
    ("markup_concat", "{{ 'x'|safe + 'y' }} {{ 'a' ~ ('<b>'|safe) }}", {}),
    ("markup_escaping", "{{ ('<b>'|safe) + '<i>' }}", {}),
    ("reasoning_split", "{{ m.split('</think>')[-1].lstrip('\\n') }}|{{ m.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}|"
     "{{ '</think>' in m }}", {"m": "<think>\nreason\n</think>\n\nanswer"}),
    ("messages_access", "{{ messages[-1]['role'] }} {{ (messages|last).content }} {{ messages|selectattr('role', 'equalto', 'user')|list|length }} "
     "{% for m in messages if m.role != 'system' %}{{ m.role }}{{ loop.index }}{% endfor %} {{ messages|length > 1 }} {{ 'abc'|upper == 'ABC' }}",
     {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}),
    ("content_none", "{% if m.content is not none %}{{ m.content }}{% else %}none{% endif %}|{{ m.content is string }}|{{ m.reasoning is defined }}",
     {"m": {"content": None}}),
    ("tool_arguments", "{% for c in calls %}{% if c.arguments is string %}{{ c.arguments }}{% else %}{{ c.arguments|tojson }}{% endif %};{% endfor %}",
     {"calls": [{"arguments": "{\"a\": 1}"}, {"arguments": {"b": [1, "x"], "c": None}}]}),
    ("loop_generators", "{% for x in [1, 2, 3]|select('odd') %}{{ x }}{{ loop.length }}{% endfor %}{% if [1]|select('even') %}T{% endif %}", {}),
]

# Cases the interpreter deliberately refuses (LLM_ERR_UNSUPPORTED) although
# jinja2 renders them: recorded so the divergence is explicit and tested.
UNSUPPORTED = {
    "interp/markup_escaping",
}


def render(env, source, variables):
    try:
        return {"expected": env.from_string(source).render(**variables)}
    except jinja2.exceptions.TemplateSyntaxError as e:
        return {"error": "TemplateSyntaxError", "message": e.message}
    except Exception as e:  # raise_exception, UndefinedError, TypeError, ...
        return {"error": type(e).__name__, "message": str(e)}


def family_vars(family, messages, add_generation_prompt, extra):
    bos, eos = SPECIAL_TOKENS[family]
    variables = {
        "messages": messages,
        "tools": None,
        "documents": None,
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos,
        "eos_token": eos,
    }
    variables.update(extra)
    return variables


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "chat_templates.json")
    env = make_env()
    cases = []
    for family in TEMPLATES:
        bos, eos = SPECIAL_TOKENS[family]
        for conv_name, messages in CONVERSATIONS.items():
            for agp in (False, True):
                case = {
                    "name": f"{family}/{conv_name}/{'gen' if agp else 'nogen'}",
                    "template": family,
                    "messages": messages,
                    "add_generation_prompt": agp,
                    "bos_token": bos,
                    "eos_token": eos,
                }
                case.update(render(env, TEMPLATES[family], family_vars(family, messages, agp, {})))
                cases.append(case)
        for rich_family, name, messages, extra in RICH_CASES:
            if rich_family != family:
                continue
            case = {
                "name": f"{family}/{name}",
                "template": family,
                "messages": messages,
                "add_generation_prompt": True,
                "bos_token": bos,
                "eos_token": eos,
                "variables": extra,
            }
            case.update(render(env, TEMPLATES[family], family_vars(family, messages, True, extra)))
            cases.append(case)
    interp_templates = {}
    for name, source, variables in INTERP_CASES:
        key = "interp/" + name
        interp_templates[key] = source
        case = {"name": key, "template": key, "variables": variables}
        if key in UNSUPPORTED:
            case["unsupported"] = True
        case.update(render(env, source, variables))
        cases.append(case)
    data = {
        "generator": "scripts/gen_chat_template_cases.py",
        "jinja2_version": jinja2.__version__,
        "now": FIXED_NOW.isoformat(),
        "templates": {**TEMPLATES, **interp_templates},
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_err = sum(1 for c in cases if "error" in c)
    print(f"wrote {len(cases)} cases ({n_err} expecting errors) to {out_path}")


if __name__ == "__main__":
    main()
