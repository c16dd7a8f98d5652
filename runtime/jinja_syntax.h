// Tokens and syntax tree of the Jinja subset used by chat templates, and the
// lexer and parser that produce them (jinja_lexer.cpp, jinja_parser.cpp).
//
// The lexer reproduces jinja2's whitespace handling with the settings
// transformers uses (trim_blocks, lstrip_blocks, keep_trailing_newline off);
// the parser follows jinja2's grammar and operator precedence, which differs
// from Python's in places (`a + b is defined` tests only b).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/jinja_value.h"

namespace llm::jinja {

enum class Tok : uint8_t { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type = Tok::Eof;
  std::string text;  // Data: the text; Name; String: decoded value; Op: the operator
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

// Splits a template into tokens, applying whitespace control. Throws
// llm::Error (LLM_ERR_INVALID_ARGUMENT) on malformed input.
std::vector<Token> tokenize(std::string_view source);

// Parse nesting (brackets, unary operators, blocks) and expression tree depth
// are capped so that parsing, evaluation and destruction recurse boundedly.
constexpr int kMaxParseNesting = 64;
constexpr int kMaxExprDepth = 96;

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Type : uint8_t {
    Const,    // value
    Name,     // name
    Attr,     // kids[0].name
    Item,     // kids[0][kids[1]]
    Slice,    // kids[0][kids[1]:kids[2]:kids[3]] (null kids for omitted parts)
    Call,     // kids[0](kids[1..]); the last kw_names.size() arguments are keywords
    Filter,   // kids[0] | name(kids[1..]); kids[0] null in {% filter %} blocks
    Test,     // kids[0] is name(kids[1..]); negated: `is not`
    Unary,    // name kids[0], name "-" or "+"
    Binary,   // kids[0] name kids[1], name one of + - * / // % ** ~
    And,
    Or,
    Not,
    Compare,  // kids[0] ops[0] kids[1] ops[1] kids[2] ... (Python chaining)
    Cond,     // kids[0] if kids[1] else kids[2] (kids[2] null: undefined)
    List,
    Tuple,
    Dict,     // kids: key, value, key, value, ...
  };
  Type type = Type::Const;
  int line = 1;
  int depth = 1;  // height of this subtree
  bool negated = false;
  Value value;
  std::string name;
  std::vector<ExprPtr> kids;
  std::vector<std::string> kw_names;
  std::vector<std::string> ops;
};

// Assignment target: a name, or a (possibly nested) tuple of names.
struct Target {
  std::string name;
  bool is_tuple = false;
  std::vector<Target> items;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Type : uint8_t {
    Text,         // text
    Print,        // {{ expr }}
    If,           // branches (cond, body); else_body
    For,          // for target in expr [if cond]: body; else_body
    Set,          // set target = expr
    SetAttr,      // set name.attr = expr
    SetBlock,     // set name [| filter]: body endset
    Macro,        // macro name(params): body
    Break,
    Continue,
    With,         // with params (name = value, ...): body
    FilterBlock,  // filter: body
    Generation,   // transformers' {% generation %}: renders body unchanged
  };
  Type type = Type::Text;
  int line = 1;
  std::string text;  // Text; SetAttr/SetBlock/Macro: the name
  std::string attr;  // SetAttr
  ExprPtr expr;
  ExprPtr cond;
  ExprPtr filter;    // SetBlock/FilterBlock: Filter chain whose innermost operand is null
  Target target;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro: defaults may be null
  Body body;
  Body else_body;
};

struct Template {
  Body body;
};

// Throws llm::Error: LLM_ERR_INVALID_ARGUMENT for malformed templates (as jinja2
// raises TemplateSyntaxError), LLM_ERR_UNSUPPORTED for jinja2 features outside
// the subset (include, extends, call blocks, ...).
std::unique_ptr<Template> parse_template(std::string_view source);

}  // namespace llm::jinja
