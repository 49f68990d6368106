// ESLint flat config: typescript-eslint `recommended` (syntax only, no type information: fast),
// import-x/no-cycle, and the folder boundaries of src/ as per-folder no-restricted-imports rules.
//
// Dependency direction (runtime values):
//   cli → server → runtime → plugins (routers, embedders, upstream, telemetry, auth, limits) → config → util, errors
//   training → runtime and below; mock → util, errors only.
// config may import the plugin registries (routers/registry, embedders/registry, prompt-text) for
// the plugins' option schemas; the plugins may import config's TYPES only.
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import { importX } from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const DIRECTION =
  'dependencies point cli → server → runtime → plugins (routers, embedders, upstream, telemetry, auth, limits) → config → util/errors';

/**
 * One `group` pattern per forbidden folder. Patterns are gitignore-style and matched against the
 * import specifier, so `**\/runtime/**` catches `../runtime/x.js` and `../../runtime/x.js` alike.
 * `except` lists specifiers (globs) that stay allowed; `typesOnly` allows `import type` from the folder.
 */
function forbid(from, folders, { typesOnly = false, except = [], why = DIRECTION } = {}) {
  return folders.map((folder) => ({
    group: [`**/${folder}/**`, ...except.filter((e) => e.includes(`/${folder}/`)).map((e) => `!${e}`)],
    allowTypeImports: typesOnly,
    message: typesOnly
      ? `${from}/ may import ${folder}/ types only (use \`import type\`): ${why}.`
      : `${from}/ must not import ${folder}/: ${why}.`,
  }));
}

/** The boundary rule for the files of one folder. */
function boundary(files, patterns) {
  return {
    files,
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
  };
}

const PLUGINS = ['routers', 'embedders', 'upstream', 'telemetry', 'auth', 'limits'];
const ALL = ['cli', 'server', 'runtime', ...PLUGINS, 'config', 'training', 'mock', 'util'];
const CONFIG_MAY_IMPORT = ['**/routers/registry.js', '**/embedders/registry.js', '**/routers/prompt-text.js'];

export default tseslint.config(
  {
    ignores: ['dist/**', 'node_modules/**', 'eval/**', 'routers/**', 'bench/results/**', 'coverage/**', '.cache/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.{ts,js,mjs,cjs}'],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js'],
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: 'tsconfig.json', alwaysTryTypes: true })],
    },
    rules: {
      // Type-only imports are ignored by no-cycle: they vanish at compile time.
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // `_`-prefixed names are deliberately unused (callback arity, destructuring to omit a key).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },

  {
    // Tests read untyped JSON bodies and poke at internals; `any` stays an error in src/ and bench/.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },

  // ---- Folder boundaries (src/cli, test/ and bench/ may import anything) ----
  boundary(['src/server/**/*.ts'], forbid('server', ['cli', 'training', 'mock'])),
  boundary(['src/runtime/**/*.ts'], forbid('runtime', ['server', 'cli', 'training', 'mock'])),
  ...PLUGINS.map((p) =>
    boundary(
      [`src/${p}/**/*.ts`],
      [
        ...forbid(p, ['server', 'runtime', 'cli', 'training', 'mock']),
        // The schema (option schemas, z.infer types) is theirs to use; loading config is not.
        ...forbid(p, ['config'], { except: ['**/config/schema.js'], why: `${p}/ may import config/schema.js only; ${DIRECTION}` }),
        // telemetry records what the plugins did: their types only, never their code.
        ...(p === 'telemetry' ? forbid(p, ['routers', 'embedders', 'upstream'], { typesOnly: true }) : []),
      ],
    ),
  ),
  boundary(
    ['src/config/**/*.ts'],
    [
      ...forbid('config', ['server', 'runtime', 'cli', 'training', 'mock', 'upstream', 'telemetry']),
      ...forbid('config', ['routers', 'embedders'], {
        except: CONFIG_MAY_IMPORT,
        why: `config may import only routers/registry, embedders/registry and prompt-text (plugin option schemas); ${DIRECTION}`,
      }),
    ],
  ),
  boundary(['src/training/**/*.ts'], forbid('training', ['server', 'cli', 'mock'])),
  boundary(
    ['src/mock/**/*.ts'],
    forbid(
      'mock',
      ALL.filter((f) => f !== 'mock' && f !== 'util'),
      { why: 'the mock upstream stands alone and may import only util/ and errors' },
    ),
  ),
  boundary(
    ['src/util/**/*.ts', 'src/errors.ts'],
    forbid(
      'util/errors',
      ALL.filter((f) => f !== 'util'),
      { why: 'util/ and errors.ts are leaves and import nothing else from src/' },
    ),
  ),
);
